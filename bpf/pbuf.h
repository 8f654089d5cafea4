/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Buffer rings the kernel allocated (REGISTER_PBUF_RING with
 * IOU_PBUF_RING_MMAP) and their mappings in the caller, for what
 * CVE-2024-0582 needs: a ring unregistered while its pages are still
 * mapped (6.4 to 6.6.4 freed them under the mapping).
 *
 * mmap(2) of a ring fd at a buffer ring's offset says where each such ring
 * was mapped (the syscall's tracepoints: the kernel's mmap handler is
 * static, and kprobes or fentry are not everywhere). After a register call
 * (its tracepoint), bpf_find_vma asks the caller's address space whether
 * that mapping is still there, of that ring at that offset:
 *   UW_I_PBUF_MAPPED on the UNREGISTER_PBUF_RING that left it mapped;
 *   UW_I_PBUF_KEPT on a later register call of the process while the
 *     mapping of a ring unregistered before is still there (a program
 *     tidying up unmaps right after unregistering; liburing does).
 * munmap itself is not traced: the mapping is looked up when asked. Every
 * mmap in the system passes sys_enter_mmap's offset test, and its exit a
 * hash lookup of its thread only while a buffer ring's mmap is in flight.
 * Loaded where the kernel has those tracepoints and bpf_find_vma (5.17+;
 * the flag exists from 6.4)
 * (hooks.pbuf_programs).
 */
#ifndef URINGWATCH_PBUF_H
#define URINGWATCH_PBUF_H

/* include/uapi/linux/io_uring.h: mmap offsets of the ring fd */
#define UW_OFF_PBUF_RING 0x80000000ULL
#define UW_OFF_PBUF_SHIFT 16
#define UW_OFF_MMAP_MASK 0xf8000000ULL
/* 4 KiB pages: on a kernel with larger ones no mapping matches (no flags) */
#define UW_PAGE_SHIFT 12

struct pbuf_key {
	__u64 off;            /* the mmap offset: UW_OFF_PBUF_RING | bgid << 16 */
	__u32 tgid;
	__u32 pad;
};

struct pbuf_map {
	__u64 ctx;            /* the ring's io_ring_ctx; 0: not mapped (pbuf_vma_is) */
	__u64 off;
	__u64 vm_start;       /* where it was mapped */
};

/* where each buffer ring was mapped, by process and offset */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct pbuf_key);
	__type(value, __u64);         /* vm_start */
} pbuf_maps SEC(".maps");

/* an mmap of a buffer ring's offset in flight: its offset, by thread */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} pbuf_mmaps SEC(".maps");

/* per process: the last ring unregistered while still mapped */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);           /* tgid */
	__type(value, struct pbuf_map);
} pbuf_gone SEC(".maps");

/* how many mmaps of a buffer ring's offset are between entry and exit:
 * while none is, an mmap's exit looks nothing up (every mmap in the system
 * runs that program) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} pbuf_pending SEC(".maps");

static __always_inline __s64 *pbuf_pending_count(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pbuf_pending, &zero);
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int tracepoint__syscalls__sys_enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
	__u64 off = ctx->args[5];
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__s64 *n;

	if ((off & UW_OFF_MMAP_MASK) != UW_OFF_PBUF_RING)
		return 0;
	n = pbuf_pending_count();
	if (!n)
		return 0;
	/* counted once per entry (its exit's delete takes it back); an entry
	 * LRU evicts leaves the count high: exits then look up, as before */
	if (!bpf_map_update_elem(&pbuf_mmaps, &tid, &off, BPF_NOEXIST))
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&pbuf_mmaps, &tid, &off, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int tracepoint__syscalls__sys_exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), start = ctx->ret;
	__u32 tid = (__u32)id;
	__s64 *n = pbuf_pending_count();
	struct pbuf_key k = { .tgid = id >> 32 };
	__u64 *off;

	if (!n || *n <= 0)
		return 0;
	off = bpf_map_lookup_elem(&pbuf_mmaps, &tid);
	if (!off)
		return 0;
	k.off = *off;
	if (!bpf_map_delete_elem(&pbuf_mmaps, &tid))
		__sync_fetch_and_add(n, -1);
	if (ctx->ret < 0 && ctx->ret >= -4095)
		return 0;
	bpf_map_update_elem(&pbuf_maps, &k, &start, BPF_ANY);
	return 0;
}

static long pbuf_vma_is(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct pbuf_map *m = data;
	struct file *f = vma->vm_file;

	/* still the ring's file at that offset, else forgotten (ctx 0) */
	if (!f || (__u64)f->private_data != m->ctx ||
	    vma->vm_pgoff != m->off >> UW_PAGE_SHIFT || vma->vm_start != m->vm_start)
		m->ctx = 0;
	return 0;
}

/* Whether m is still mapped in the current process. */
static __always_inline bool pbuf_mapped(struct pbuf_map *m)
{
	struct pbuf_map probe = *m;

	if (bpf_find_vma(bpf_get_current_task_btf(), probe.vm_start, pbuf_vma_is, &probe, 0))
		return false;
	return probe.ctx != 0;
}

/* After a register call's ring was found (its tracepoint, the call's slot
 * s): the flags above, in the call's identities. */
static __always_inline int pbuf__register(struct trace_event_raw_io_uring_register *ctx,
					  struct uw_slot *s)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pbuf_map *gone, now;
	struct pbuf_key k = {};
	__u64 *start;
	__u16 bgid;

	gone = bpf_map_lookup_elem(&pbuf_gone, &tgid);
	if (gone) {
		now = *gone;
		if (pbuf_mapped(&now))
			s->call.ident.flags |= UW_I_PBUF_KEPT;
		else
			bpf_map_delete_elem(&pbuf_gone, &tgid);
	}
	if (ctx->opcode != IORING_UNREGISTER_PBUF_RING || ctx->ret < 0 ||
	    !head_has(s, sizeof(struct io_uring_buf_reg)))
		return 0;
	bgid = *(__u16 *)&s->data[OFF(io_uring_buf_reg, bgid)];
	k.off = UW_OFF_PBUF_RING | (__u64)bgid << UW_OFF_PBUF_SHIFT;
	k.tgid = tgid;
	start = bpf_map_lookup_elem(&pbuf_maps, &k);
	if (!start)
		return 0;
	now.ctx = (__u64)ctx->ctx;
	now.off = k.off;
	now.vm_start = *start;
	bpf_map_delete_elem(&pbuf_maps, &k);
	if (pbuf_mapped(&now)) {
		s->call.ident.flags |= UW_I_PBUF_MAPPED;
		bpf_map_update_elem(&pbuf_gone, &tgid, &now, BPF_ANY);
	}
	return 0;
}

#endif
