/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Capture: copying the user memory behind `arg` into a slot, region by
 * region as the opcode's plan says (QUERY's chain at exit, when the kernel
 * has filled it), and the calling task's context.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_CAPTURE_H
#define URINGWATCH_CAPTURE_H

#define UW_PIDNS_MAX 32       /* the kernel's MAX_PID_NS_LEVEL */

static __always_inline const struct uw_plan *plan_of(__u32 opcode)
{
	__u64 op = opcode & ~IORING_REGISTER_USE_REGISTERED_RING;

	if (cfg.generic || op >= UW_NPLANS)
		return 0;
	keep(op);       /* older verifiers lose the bound otherwise (6.1) */
	if (!plans[op].known)
		return 0;
	return &plans[op];
}

/* The pid number p has at pid-namespace level `level` (<= UW_PIDNS_MAX).
 * The verifier refuses a variable offset into a BTF-typed pointer, so
 * where numbers[] is a flexible array (6.1 and later in the matrix) each
 * level is a constant load; kernels that declare numbers[1] (5.10's BTF,
 * which has no task BTF reads anyway; those between have both) refuse a
 * typed load past it too, and get bpf_probe_read_kernel. CO-RE makes the
 * branch not taken dead code, which the verifier skips. */
static __always_inline __u32 pid_nr_at(struct pid *p, __u32 level)
{
	__u32 nr = 0, i;

	if (bpf_core_field_size(p->numbers) == 0) {
#pragma unroll
		for (i = 0; i <= UW_PIDNS_MAX; i++)
			if (i == level)
				return p->numbers[i].nr;
		return 0;
	}
	bpf_probe_read_kernel(&nr, sizeof(nr), (void *)p + bpf_core_field_offset(p->numbers) +
			      level * bpf_core_type_size(struct upid) +
			      bpf_core_field_offset(struct upid, nr));
	return nr;
}

/* The caller's context is read at exit straight into its record's parts
 * (record.h), and only for a call that is sent: one fairness coalesces
 * reads none. It is read every time, not kept per process: the task walks
 * (ppid, the namespaces' inodes, the pid numbers) cost 2-5 ns a call
 * (docs/BENCHMARKS.md), less than a cache's lookup, and no pointer
 * compare can tell that the hostname, written in place, or a namespace
 * freed and made anew at the same address, has changed. */

/* The caller's pid, tid and hostname as its own namespaces see them: the
 * entries of its pid namespace's level (0 is the host's) in its thread's
 * and its group leader's struct pid (threads share a pid namespace).
 * Every byte of *ns is set (it lies where other parts were before); its
 * flags are returned, and with none the part is not sent. */
static __always_inline __u32 fill_ns_ctx(struct uw_ns_ctx *ns, struct task_struct *task)
{
	struct pid *tid = task->thread_pid, *pid = task->group_leader->thread_pid;
	struct uts_namespace *uts;
	__u32 level, i, flags = 0, nspid = 0, nstid = 0;
	const __u64 *src;
	__u64 *dst;

	if (tid && pid) {
		level = tid->level;
		if (level <= UW_PIDNS_MAX && level == pid->level) {
			nstid = pid_nr_at(tid, level);
			nspid = pid_nr_at(pid, level);
			flags = UW_NS_IDS;
		}
	}
	ns->nspid = nspid;
	ns->nstid = nstid;
	ns->flags = flags;
	ns->pad = 0;
	if (!task->nsproxy || !task->nsproxy->uts_ns) {
		if (flags)      /* sent: no earlier record's bytes in its name */
			__builtin_memset(ns->hostname, 0, sizeof(ns->hostname));
		return flags;
	}
	uts = task->nsproxy->uts_ns;
	/* Eight bytes a load: a typed load may span the elements of an array
	 * as long as it ends inside it (nodename has 65). Byte by byte, this
	 * was most of the context's cost (~40 ns a call, docs/BENCHMARKS.md). keep()
	 * hides the pointers' alignment (nodename is at an odd offset), else
	 * clang splits each load back into bytes; the kernel allows unaligned
	 * loads on x86 and arm64. */
	src = (const void *)uts->name.nodename;
	dst = (void *)ns->hostname;
	keep(src);
	keep(dst);
#pragma unroll
	for (i = 0; i < UW_HOSTNAME_LEN / 8; i++)
		dst[i] = src[i];
	ns->flags = flags | UW_NS_UTS;
	return flags | UW_NS_UTS;
}

/* ppid and namespaces into *t, through BTF-typed task pointers: plain
 * loads the verifier checks, allowed where bpf_probe_read_kernel is locked
 * down. Returns the call flags it filled. */
static __always_inline __u32 fill_task(struct uw_task *t, struct task_struct *task)
{
	t->ppid = task->real_parent->tgid;
	t->pad = 0;
	if (!task->nsproxy) {
		t->pidns = 0;
		t->mntns = 0;
		return UW_F_PPID;
	}
	t->pidns = task->nsproxy->pid_ns_for_children->ns.inum;
	t->mntns = task->nsproxy->mnt_ns->ns.inum;
	return UW_F_PPID | UW_F_NS;
}

/* Copies len bytes of user memory to data[off..]. Not inlined: the
 * verifier then checks it per call with `max` a constant, which proves
 * the write stays inside the slot. `off` is forgotten first: with a large
 * cap the caller's bounds on it can be self-contradictory on a path that
 * never runs, which 6.12's verifier follows anyway and rejects ("REG
 * INVARIANTS VIOLATION", then "R1 type=scalar"). */
static __noinline int read_user(struct uw_slot *s, __u64 off, __u64 len,
				__u64 addr, __u64 max)
{
	if (len > max)
		len = max;
	keep(len);
	forget(off);
	if (!len || off > UW_DATA_MAX - max)
		return 0;
	keep(off);
	return bpf_probe_read_user(&s->data[off], len, (void *)addr);
}

/* Describes region i: `count` elements at `addr`, capped; reads it into
 * data[off..] unless the kernel only writes it. Returns bytes used. */
static __always_inline __u32 capture(struct uw_slot *s, int i, __u64 addr,
				     __u32 count, __u32 elem, __u32 dir,
				     __u32 off, __u32 max)
{
	struct uw_region *r = &s->call.region[i & (UW_NREGION - 1)];
	__u32 n = count < cfg.cap ? count : cfg.cap;
	__u32 len = addr ? n * elem : 0;
	__u16 flags = 0;

	if (len > max)
		len = max;
	r->addr = addr;
	r->count = count;
	r->elem = elem;
	r->len = len;
	if ((__u64)count * elem > len)
		flags = UW_R_TRUNC;
	if (dir == D_OUT)
		flags |= UW_R_OUT;
	r->flags = flags;       /* every field set: the slot is not cleared */
	if (dir != D_OUT && read_user(s, off, len, addr, max)) {
		r->flags = flags | UW_R_FAULT;
		bump(UW_CNT_READ_FAULT);
	}
	return len;
}

/* A head field the plan points at: a pointer or a count. */
static __always_inline __u64 head_field(struct uw_slot *s, __u8 spec, int wide)
{
	__u32 off = spec & 0x7f;

	/* nothing read at arg (NULL, or a fault): the slot's bytes there are
	 * an earlier call's, never this one's pointers or counts */
	if (off > UW_HEAD_MAX - 8 || off + (wide ? 8 : 4) > s->call.region[0].len ||
	    (s->call.region[0].flags & UW_R_FAULT))
		return 0;
	if (wide)
		return *(__u64 *)&s->data[off];
	return *(__u32 *)&s->data[off];
}

static __always_inline __u64 region_addr(struct uw_slot *s, __u8 ptr)
{
	if (ptr == P_ARG)
		return s->call.arg;
	if (ptr == P_ARG_END)
		return s->call.arg + s->call.region[0].len;
	if (ptr & 0x80)
		return head_field(s, ptr, 1);
	return 0;
}

static __always_inline __u32 region_count(struct uw_slot *s, __u8 cnt)
{
	if (cnt == C_NR_ARGS)
		return s->call.nr_args;
	if (cnt == C_ONE)
		return 1;
	if (cnt == C_CHAIN)
		return UW_QUERY_MAX;
	return head_field(s, cnt, 0);
}

/* A region the call does not have: every field zero, as the record says. */
static __always_inline void no_region(struct uw_region *r)
{
	r->addr = 0;
	r->count = 0;
	r->len = 0;
	r->elem = 0;
	r->flags = 0;
}

/* Regions 0..2 at enter, each described once (region 3 at exit). */
static __always_inline void capture_args(struct uw_slot *s)
{
	const struct uw_plan *p = plan_of(s->call.opcode);
	bool done = false;
	__u32 off, i;

	if (!p) {
		s->call.flags = UW_F_RAW;
		capture(s, 0, s->call.arg, cfg.snap_bytes, 1, D_IN, 0, UW_HEAD_MAX);
		no_region(&s->call.region[1]);
		no_region(&s->call.region[2]);
		return;
	}
	s->call.flags = 0;
	off = capture(s, 0, s->call.arg, p->head ? 1 : 0, p->head,
		      p->head_dir == D_OUT ? D_OUT : D_IN, 0, UW_HEAD_MAX);
	/* Unrolled: clang laid this loop out with its back-edge a fall-through,
	 * not a jump, which the verifiers of 5.10 and 6.1 reject ("back-edge
	 * from insn 415 to 416"). */
#pragma unroll
	for (i = 0; i < 2; i++) {
		const struct uw_plan_region *pr = &p->reg[i];
		__u64 addr;

		if (done || pr->ptr == P_NONE) {
			done = true;    /* no region after the plan's last */
			no_region(&s->call.region[1 + i]);
			continue;
		}
		addr = region_addr(s, pr->ptr);
		if (i == 0)
			off += capture(s, 1, addr, region_count(s, pr->cnt), pr->elem,
				       pr->dir, off, UW_ARR_A_MAX);
		else
			off += capture(s, 2, addr, region_count(s, pr->cnt), pr->elem,
				       pr->dir, off, UW_ARR_B_MAX);
	}
}

/* The uapi layout of a QUERY chain header, outside vmlinux.h's
 * preserve_access_index: the memory read is user memory with the uapi
 * layout, and a CO-RE access to a type the kernel's BTF lacks (before
 * 6.18) is poisoned by libbpf, failing the load on every older kernel. */
struct uw_query_hdr {
	__u64 next_entry;
	__u64 query_data;
	__u32 query_op;
	__u32 size;
	__s32 result;
	__u32 resv[3];
};
_Static_assert(sizeof(struct uw_query_hdr) == sizeof(struct io_uring_query_hdr),
	       "uw_query_hdr must be io_uring_query_hdr");

/* Walks QUERY's header chain at exit into region 1 (data[off..]): each
 * entry is the header and the first bytes of its data, as the kernel left
 * them. count becomes the entries found; TRUNC if the chain goes on. */
static __always_inline void walk_query_chain(struct uw_slot *s, __u32 off)
{
	struct uw_region *r = &s->call.region[1];
	__u64 ptr = r->addr, at, n;
	__u32 i;

	for (i = 0; i < UW_QUERY_MAX; i++) {
		struct uw_query_hdr *h;

		at = off + i * UW_QUERY_ENTRY;
		if (!ptr || at > UW_DATA_MAX - UW_QUERY_ENTRY)
			break;
		keep(at);
		h = (void *)&s->data[at];
		if (bpf_probe_read_user(h, sizeof(*h), (void *)ptr)) {
			r->flags |= UW_R_FAULT;
			bump(UW_CNT_READ_FAULT);
			break;
		}
		n = h->size < UW_QUERY_DATA ? h->size : UW_QUERY_DATA;
		keep(n);
		if (n > UW_QUERY_DATA)
			break;
		if (n && bpf_probe_read_user(&s->data[at + sizeof(*h)], n,
					     (void *)h->query_data))
			r->flags |= UW_R_FAULT;
		ptr = h->next_entry;
	}
	r->count = i;
	if (ptr && i == UW_QUERY_MAX)
		r->flags |= UW_R_TRUNC;
}

#endif
