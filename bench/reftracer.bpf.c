// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The reference tracer's BPF side: the plain native way to trace
 * io_uring_register with a generic capture. Enter stashes the arguments and
 * the first REF_SNAP bytes at arg in a per-thread hash entry; exit sends one
 * record through the ring buffer without waking the consumer until
 * wakeup_bytes are queued. The yardstick uringwatch's cost is measured against.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "reftracer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u64 wakeup_bytes = 256 * 1024;

struct stash {
	__u64 ts_enter;
	__u64 arg;
	__s32 fd;
	__u32 opcode;
	__u32 nr_args;
	__u32 fault;
	__u8 data[REF_SNAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);     /* as uringwatch's default */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct stash);
} stashes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REF_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void bump(__u32 c)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &c);

	if (n)
		(*n)++;
}

SEC("tracepoint/syscalls/sys_enter_io_uring_register")
int ref_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct stash s = {
		.ts_enter = bpf_ktime_get_boot_ns(),
		.fd = (__s32)ctx->args[0],
		.opcode = (__u32)ctx->args[1],
		.arg = ctx->args[2],
		.nr_args = (__u32)ctx->args[3],
	};

	/* a NULL arg is not read, as in uringwatch */
	if (s.arg && bpf_probe_read_user(s.data, sizeof(s.data), (void *)s.arg)) {
		s.fault = 1;
		bump(REF_READ_FAULT);
	}
	if (bpf_map_update_elem(&stashes, &tid, &s, BPF_ANY))
		bump(REF_STASH_FULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_io_uring_register")
int ref_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct ref_event *e;
	struct stash *s;
	__u64 flags;

	s = bpf_map_lookup_elem(&stashes, &tid);
	if (!s) {
		bump(REF_NO_ENTER);
		return 0;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		bump(REF_RING_FULL);
		goto out;
	}
	e->ts_enter = s->ts_enter;
	e->ts_exit = bpf_ktime_get_boot_ns();
	e->arg = s->arg;
	e->ret = ctx->ret;
	e->pid = id >> 32;
	e->tid = tid;
	e->fd = s->fd;
	e->opcode = s->opcode;
	e->nr_args = s->nr_args;
	e->fault = s->fault;
	__builtin_memcpy(e->data, s->data, sizeof(e->data));
	/* batched wakeups, as uringwatch: the consumer also drains on a timer */
	flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	bump(REF_EMITTED);
out:
	bpf_map_delete_elem(&stashes, &tid);
	return 0;
}

/* The floor variants (reftracer --floor): the reference's work, plus only
 * what the chosen promises need, with the least work each: the call's
 * state written in place in a per-thread entry (no copy at enter), the
 * record sent by one copy of the bytes used. Loaded instead of ref_enter
 * and ref_exit. */
const volatile bool floor_reread;
const volatile bool floor_context;
const volatile bool floor_carry;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct ref_floor);
} floors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ref_floor);
} floor_zero SEC(".maps");

/* The thread's entry, made from zeros at its first call. */
static __always_inline struct ref_floor *floor_of(__u32 tid)
{
	struct ref_floor *f = bpf_map_lookup_elem(&floors, &tid);
	__u32 zero = 0;

	if (f)
		return f;
	f = bpf_map_lookup_elem(&floor_zero, &zero);
	if (!f || bpf_map_update_elem(&floors, &tid, f, BPF_NOEXIST))
		return 0;
	return bpf_map_lookup_elem(&floors, &tid);
}

SEC("tracepoint/syscalls/sys_enter_io_uring_register")
int ref_floor_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), len;
	struct ref_floor *f = floor_of(tid);

	if (!f) {
		bump(REF_STASH_FULL);
		return 0;
	}
	f->e.ts_enter = bpf_ktime_get_boot_ns();
	f->e.fd = (__s32)ctx->args[0];
	f->e.opcode = (__u32)ctx->args[1];
	f->e.arg = ctx->args[2];
	f->e.nr_args = (__u32)ctx->args[3];
	f->e.fault = 0;
	f->ring = 0;
	f->changed = 0;
	if (f->e.arg && bpf_probe_read_user(f->e.data, sizeof(f->e.data), (void *)f->e.arg)) {
		f->e.fault = 1;
		bump(REF_READ_FAULT);
	}
	/* the bytes only sent, never written: the least any tracer that
	 * sends them does (the ring's file, and for REGISTER_FILES each fd's) */
	f->carry_len = 0;
	if (floor_carry) {
		len = f->e.opcode == 2 ? f->e.nr_args + 1 : 1;
		if (len > REF_CARRY_MAX / REF_CARRY_ENTRY)
			len = REF_CARRY_MAX / REF_CARRY_ENTRY;
		f->carry_len = len * REF_CARRY_ENTRY;
	}
	f->live = 1;
	return 0;
}

SEC("tracepoint/io_uring/io_uring_register")
int ref_floor_register(struct trace_event_raw_io_uring_register *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ref_floor *f = bpf_map_lookup_elem(&floors, &tid);

	if (f && f->live)
		f->ring = (__u64)ctx->ctx;
	return 0;
}

/* The caller's context as uringwatch reads it at exit (its capture.h),
 * through BTF-typed task pointers, with the least code: the pid numbers
 * of a namespace at most 3 deep. */
static __always_inline void floor_ctx(struct ref_floor *f)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pid *tid = task->thread_pid, *pid = task->group_leader->thread_pid;
	__u64 ids = bpf_get_current_uid_gid(), *dst = (void *)f->hostname;
	const __u64 *src;
	__u32 i, level;

	f->cgroup_id = bpf_get_current_cgroup_id();
	f->uid = (__u32)ids;
	f->gid = ids >> 32;
	bpf_get_current_comm(f->comm, sizeof(f->comm));
	f->ppid = task->real_parent->tgid;
	f->pidns = task->nsproxy->pid_ns_for_children->ns.inum;
	f->mntns = task->nsproxy->mnt_ns->ns.inum;
	level = tid->level;
	f->nspid = f->nstid = 0;
#pragma unroll
	for (i = 0; i < 4; i++)
		if (i == level) {
			f->nstid = tid->numbers[i].nr;
			f->nspid = pid->numbers[i].nr;
		}
	src = (const void *)task->nsproxy->uts_ns->name.nodename;
	asm volatile("" : "+r"(src));   /* keep the 8-byte loads (odd offset) */
#pragma unroll
	for (i = 0; i < 64 / 8; i++)
		dst[i] = src[i];
}

SEC("tracepoint/syscalls/sys_exit_io_uring_register")
int ref_floor_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), flags, now[REF_SNAP / 8];
	__u32 tid = (__u32)id, len, i;
	struct ref_floor *f = bpf_map_lookup_elem(&floors, &tid);

	if (!f || !f->live) {
		bump(REF_NO_ENTER);
		return 0;
	}
	f->live = 0;
	if (floor_reread && f->e.arg && !f->e.fault &&
	    !bpf_probe_read_user(now, sizeof(now), (void *)f->e.arg)) {
		for (i = 0; i < REF_SNAP / 8; i++)
			if (now[i] != ((__u64 *)f->e.data)[i])
				f->changed = 1;
	}
	if (floor_context)
		floor_ctx(f);
	f->e.ts_exit = bpf_ktime_get_boot_ns();
	f->e.ret = ctx->ret;
	f->e.pid = id >> 32;
	f->e.tid = tid;
	len = f->carry_len;
	if (len > REF_CARRY_MAX)
		len = REF_CARRY_MAX;
	flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, f, __builtin_offsetof(struct ref_floor, carry) + len, flags))
		bump(REF_RING_FULL);
	else
		bump(REF_EMITTED);
	return 0;
}

/* The yardstick for operations: a count per (thread, opcode, fixed file)
 * from the same tracepoint uringwatch uses, and nothing else. */
struct op_key {
	__u32 tid;
	__u32 opcode;
	__u64 fixed;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct op_key);
	__type(value, __u64);
} op_counts SEC(".maps");

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(ref_submit, struct io_kiocb *req)
{
	struct op_key k = {
		.tid = (__u32)bpf_get_current_pid_tgid(),
		.opcode = req->opcode,
		.fixed = req->flags & 1,
	};
	__u64 one = 1, *n = bpf_map_lookup_elem(&op_counts, &k);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&op_counts, &k, &one, BPF_NOEXIST);
	return 0;
}

/* The least a tracer that joins each operation to its result adds: a
 * program on the completion tracepoint that does nothing. Loaded only with
 * --completions, to measure that floor beside the reference. */
SEC("tp_btf/io_uring_complete")
int BPF_PROG(ref_complete)
{
	return 0;
}
