// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * uringwatch: capture every io_uring_register(2) call with the user memory
 * behind `arg`, decoded per opcode by user space.
 *
 * sys_enter saves the arguments and a copy of the user memory the kernel is
 * about to read into a per-call slot; sys_exit adds the return value,
 * re-reads the inputs to spot changes made while the kernel was copying
 * them (TOCTOU), and sends the slot as one variable-sized record.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "uringwatch.h"
#include "uapi_newer.h"
#include "plans.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Makes the compiler keep a bounds check the verifier must see. */
#define keep(var) asm volatile("" : "+r"(var))

/* Makes the verifier forget what it knows of var (6.12 and older do not
 * track division), so the bounds check that follows starts clean. */
#define forget(var) asm volatile("%0 /= 1" : "+r"(var))

/* Its own section, so the loader finds it as the whole of one map. */
SEC(".rodata.cfg") const volatile struct uw_config cfg = {
	.abi = UW_ABI_VERSION,
	.cap = 64,
	.snap_bytes = 64,
	.wakeup_bytes = 256 * 1024,
	.use_task_btf = 1,
	.targ_uid = (__u32)-1,
};

/* inflight value for a call that got no slot (inflight_full) */
#define NO_SLOT 0xffffffff

/* A call in flight: the record as it will be sent, and its data. */
struct uw_slot {
	struct uw_call call;
	__u8 data[UW_DATA_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Slots are big, so they live in an array and a tid maps to a slot index
 * taken from a free queue: no per-call allocation or value copy. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct uw_slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 256);
	__type(value, __u32);
} free_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_counters);
} counters SEC(".maps");

/* Filter sets user space can change while tracing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} cgroups SEC(".maps");

/* Keeps the uapi structs Python decodes in the object's BTF, where
 * tests/test_abi.py compares them with Python's layouts. */
struct uw_uapi_types {
	struct iovec iovec;
	struct io_uring_rsrc_register rsrc_register;
	struct io_uring_rsrc_update rsrc_update;
	struct io_uring_rsrc_update2 rsrc_update2;
	struct io_uring_probe probe;
	struct io_uring_probe_op probe_op;
	struct io_uring_restriction restriction;
	struct io_uring_buf_reg buf_reg;
	struct io_uring_buf_status buf_status;
	struct io_uring_napi napi;
	struct io_uring_clock_register clock_register;
	struct io_uring_clone_buffers clone_buffers;
	struct io_uring_sync_cancel_reg sync_cancel_reg;
	struct io_uring_file_index_range file_index_range;
	struct io_uring_sqe sqe;
	struct io_uring_zcrx_ifq_reg zcrx_ifq_reg;
	struct io_uring_zcrx_area_reg zcrx_area_reg;
	struct io_uring_region_desc region_desc;
	struct io_uring_mem_region_reg mem_region_reg;
	struct io_uring_query_hdr query_hdr;
	struct io_uring_params params;
	struct io_uring_query_opcode query_opcode;
	struct zcrx_ctrl zcrx_ctrl;
	struct io_uring_bpf bpf;
	struct io_uring_bpf_filter bpf_filter;
	struct sock_filter sock_filter;
};
struct uw_uapi_types *uw_uapi_anchor __attribute__((unused));

/* Likewise for the enums Python mirrors. */
struct uw_enums {
	enum uw_kind kind;
	enum uw_call_flags call_flags;
	enum uw_region_flags region_flags;
	enum uw_counter counter;
};
struct uw_enums *uw_enums_anchor __attribute__((unused));

static __always_inline void bump(enum uw_counter c)
{
	__u32 zero = 0;
	struct uw_counters *cnt = bpf_map_lookup_elem(&counters, &zero);

	if (cnt && c < UW_CNT_MAX)
		cnt->n[c]++;
}

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

/* Fills ppid and namespaces through BTF-typed task pointers: plain loads
 * the verifier checks, allowed where bpf_probe_read_kernel is locked down. */
static __always_inline void fill_task(struct uw_call *c)
{
	struct task_struct *task;

	if (!cfg.use_task_btf)
		return;
	task = bpf_get_current_task_btf();
	c->ppid = task->real_parent->tgid;
	c->flags |= UW_F_PPID;
	if (task->nsproxy) {
		c->pidns = task->nsproxy->pid_ns_for_children->ns.inum;
		c->mntns = task->nsproxy->mnt_ns->ns.inum;
		c->flags |= UW_F_NS;
	}
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

	if (len > max)
		len = max;
	r->addr = addr;
	r->count = count;
	r->elem = elem;
	r->len = len;
	if ((__u64)count * elem > len)
		r->flags |= UW_R_TRUNC;
	if (dir == D_OUT)
		r->flags |= UW_R_OUT;
	else if (read_user(s, off, len, addr, max)) {
		r->flags |= UW_R_FAULT;
		bump(UW_CNT_READ_FAULT);
	}
	return len;
}

/* A head field the plan points at: a pointer or a count. */
static __always_inline __u64 head_field(struct uw_slot *s, __u8 spec, int wide)
{
	__u32 off = spec & 0x7f;

	if (off > UW_HEAD_MAX - 8 || (s->call.region[0].flags & UW_R_FAULT))
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

static __always_inline void capture_args(struct uw_slot *s)
{
	const struct uw_plan *p = plan_of(s->call.opcode);
	__u32 off, i;

	if (!p) {
		s->call.flags |= UW_F_RAW;
		capture(s, 0, s->call.arg, cfg.snap_bytes, 1, D_IN, 0, UW_HEAD_MAX);
		return;
	}
	off = capture(s, 0, s->call.arg, p->head ? 1 : 0, p->head,
		      p->head_dir == D_OUT ? D_OUT : D_IN, 0, UW_HEAD_MAX);
	/* Unrolled: clang laid this loop out with its back-edge a fall-through,
	 * not a jump, which the verifiers of 5.10 and 6.1 reject ("back-edge
	 * from insn 415 to 416"). */
#pragma unroll
	for (i = 0; i < 2; i++) {
		const struct uw_plan_region *pr = &p->reg[i];
		__u64 addr;

		if (pr->ptr == P_NONE)
			break;
		addr = region_addr(s, pr->ptr);
		if (i == 0)
			off += capture(s, 1, addr, region_count(s, pr->cnt), pr->elem,
				       pr->dir, off, UW_ARR_A_MAX);
		else
			off += capture(s, 2, addr, region_count(s, pr->cnt), pr->elem,
				       pr->dir, off, UW_ARR_B_MAX);
	}
}

/* The filters that hold at both enter and exit. Checks compiled out by the
 * verifier when their knob is off (rodata is constant at load). */
static __always_inline bool task_allowed(__u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;

	if (cfg.targ_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (cfg.targ_uid != (__u32)-1 && (__u32)bpf_get_current_uid_gid() != cfg.targ_uid)
		return false;
	if (cfg.targ_cgroups) {
		__u64 cg = bpf_get_current_cgroup_id();

		if (!bpf_map_lookup_elem(&cgroups, &cg))
			return false;
	}
	if (cfg.targ_comm[0]) {
		char comm[UW_COMM_LEN];
		int i;

		bpf_get_current_comm(comm, sizeof(comm));
		for (i = 0; i < UW_COMM_LEN; i++) {
			if (comm[i] != cfg.targ_comm[i])
				return false;
			if (!comm[i])
				break;
		}
	}
	return true;
}

static __always_inline bool any_filter(void)
{
	return cfg.targ_pids || cfg.targ_cgroups || cfg.targ_uid != (__u32)-1 ||
	       cfg.targ_comm[0] || cfg.targ_opcodes;
}

static __always_inline bool opcode_allowed(__u32 opcode)
{
	__u32 op = opcode & ~IORING_REGISTER_USE_REGISTERED_RING;

	return !cfg.targ_opcodes || (op < 64 && (cfg.targ_opcodes >> op) & 1);
}

#define CHUNK 256

static __always_inline void note_change(struct uw_slot *s, __u32 spot)
{
	__u32 n = s->call.nchanged;

	s->call.flags |= UW_F_CHANGED;
	if (n >= UW_MAX_CHANGED) {
		s->call.flags |= UW_F_CHANGED_MORE;
		return;
	}
	s->call.changed[n & (UW_MAX_CHANGED - 1)] = spot;
	s->call.nchanged = n + 1;
}

struct cmp_ctx {
	struct uw_slot *s;
	struct uw_region *r;
	__u64 i, off, len;
	__u64 buf[CHUNK / 8];
};

/* One bpf_loop step per 8-byte word of a region: at each chunk start,
 * re-read CHUNK bytes of user memory; then compare word k with the enter
 * copy, noting each 4-byte half that changed. bpf_loop has the verifier
 * check this body once, not once per iteration. */
static long compare_word(__u64 k, struct cmp_ctx *x)
{
	__u64 pos = k * 8, w = pos % CHUNK, rem, at, mask, diff;
	struct uw_slot *s = x->s;

	if (pos >= x->len)
		return 1;
	if (!w) {
		rem = x->len - pos < CHUNK ? x->len - pos : CHUNK;
		keep(rem);
		if (rem > CHUNK || bpf_probe_read_user(x->buf, rem, (void *)(x->r->addr + pos))) {
			x->r->flags |= UW_R_EXIT_FAULT;
			s->call.flags |= UW_F_EXIT_FAULT;
			return 1;
		}
	}
	at = x->off + pos;
	if (at > UW_DATA_MAX - 8 || w > CHUNK - 8)
		return 1;
	keep(at);
	rem = x->len - pos;
	mask = rem >= 8 ? ~0ULL : (1ULL << (rem * 8)) - 1;
	diff = (x->buf[w / 8] ^ *(__u64 *)&s->data[at]) & mask;
	if (!diff)
		return 0;
	x->r->flags |= UW_R_CHANGED;
	if (diff & 0xffffffffULL)
		note_change(s, x->i << 24 | pos);
	if (diff >> 32)
		note_change(s, x->i << 24 | (pos + 4));
	return 0;
}

/* Compares region i, whose enter copy is at data[off..], with the user
 * memory now. Needs bpf_loop (5.17+); without it nothing is compared and
 * the record says so. `loop` is a compile-time constant per program:
 * false in the _noloop twins, which the loader picks without bpf_loop. */
static __always_inline void compare(struct uw_slot *s, __u32 i, __u32 off, const bool loop)
{
	struct cmp_ctx x = { .s = s, .r = &s->call.region[i & (UW_NREGION - 1)],
			     .i = i, .off = off };

	if (!loop)
		return;
	x.len = x.r->len;
	bpf_loop((x.len + 7) / 8, compare_word, &x, 0);
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

/* At exit: fill OUT regions, compare IN regions, copy the first INOUT
 * region's new contents into region 3. */
static __always_inline void finish_args(struct uw_slot *s, const bool loop)
{
	const struct uw_plan *p = plan_of(s->call.opcode);
	__u32 dir, off = 0, i;
	static const __u32 max[3] = { UW_HEAD_MAX, UW_ARR_A_MAX, UW_ARR_B_MAX };

	if (!loop)
		s->call.flags |= UW_F_UNCOMPARED;

	for (i = 0; i < 3; i++) {
		struct uw_region *r = &s->call.region[i];

		dir = !p ? D_IN : i == 0 ? p->head_dir : p->reg[i - 1].dir;
		if (!r->len || (r->flags & UW_R_FAULT)) {
			off += r->len;
			continue;
		}
		if (i == 1 && p && p->reg[0].cnt == C_CHAIN) {
			walk_query_chain(s, off);
		} else if (r->flags & UW_R_OUT) {
			if (read_user(s, off, r->len, r->addr, max[i])) {
				r->flags |= UW_R_FAULT;
				bump(UW_CNT_READ_FAULT);
			}
		} else if (dir == D_IN) {
			compare(s, i, off, loop);
		} else if (!s->call.region[3].elem) {
			struct uw_region *x = &s->call.region[3];
			__u32 total = s->call.region[0].len + s->call.region[1].len +
				      s->call.region[2].len;

			x->addr = r->addr;
			x->elem = r->elem;
			x->count = r->count;
			x->len = r->len < UW_OUT_MAX ? r->len : UW_OUT_MAX;
			x->flags = UW_R_OUT | (r->len > UW_OUT_MAX ? UW_R_TRUNC : 0);
			if (read_user(s, total, x->len, x->addr, UW_OUT_MAX)) {
				x->flags |= UW_R_FAULT;
				bump(UW_CNT_READ_FAULT);
			}
		}
		off += r->len;
	}
}

/* Syscall entry: filter, take a slot, save the arguments and user memory. */
static __always_inline int on_enter(__s32 fd, __u32 opcode, __u64 arg, __u32 nr_args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, idx, *old;
	struct uw_slot *s;
	bool reuse;

	if (!task_allowed(id) || !opcode_allowed(opcode)) {
		bump(UW_CNT_FILTERED);
		return 0;
	}
	old = bpf_map_lookup_elem(&inflight, &tid);
	reuse = old && *old != NO_SLOT;
	if (reuse) {
		/* the previous call of this thread never reached exit */
		idx = *old;
		bump(UW_CNT_NO_EXIT);
	} else if (bpf_map_pop_elem(&free_slots, &idx)) {
		/* counted once here; the marker tells exit not to count it again */
		idx = NO_SLOT;
		bpf_map_update_elem(&inflight, &tid, &idx, BPF_ANY);
		bump(UW_CNT_INFLIGHT_FULL);
		return 0;
	}
	s = bpf_map_lookup_elem(&slots, &idx);
	if (!s)
		return 0;
	__builtin_memset(&s->call, 0, sizeof(s->call));
	s->call.hdr.kind = UW_KIND_CALL;
	s->call.hdr.abi = UW_ABI_VERSION;
	s->call.ts_enter = bpf_ktime_get_boot_ns();
	s->call.pid = id >> 32;
	s->call.tid = tid;
	s->call.fd = fd;
	s->call.opcode = opcode;
	s->call.arg = arg;
	s->call.nr_args = nr_args;
	capture_args(s);
	if (!reuse && bpf_map_update_elem(&inflight, &tid, &idx, BPF_ANY)) {
		bpf_map_push_elem(&free_slots, &idx, 0);
		bump(UW_CNT_INFLIGHT_FULL);
	}
	return 0;
}

/* Syscall exit: add the result and context, re-read, send one record. */
static __always_inline int on_exit(long ret, const bool loop)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), idx;
	__u64 uid_gid = bpf_get_current_uid_gid(), flags, size, queued;
	struct uw_slot *s;
	__u32 *ip;

	ip = bpf_map_lookup_elem(&inflight, &tid);
	if (!ip) {
		/* With filters a miss is most likely a filtered call: only an
		 * unfiltered tracer can tell a missed enter. */
		if (!any_filter())
			bump(UW_CNT_NO_ENTER);
		return 0;
	}
	idx = *ip;
	bpf_map_delete_elem(&inflight, &tid);
	if (idx == NO_SLOT)
		return 0;
	s = bpf_map_lookup_elem(&slots, &idx);
	if (!s)
		goto out;
	if (cfg.targ_failed && ret >= 0) {
		bump(UW_CNT_FILTERED);
		goto out;
	}
	s->call.ts_exit = bpf_ktime_get_boot_ns();
	s->call.ret = ret;
	s->call.uid = (__u32)uid_gid;
	s->call.gid = uid_gid >> 32;
	s->call.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(s->call.comm, sizeof(s->call.comm));
	fill_task(&s->call);
	finish_args(s, loop);

	size = sizeof(s->call) + s->call.region[0].len + s->call.region[1].len +
	       s->call.region[2].len + s->call.region[3].len;
	if (size > sizeof(*s))
		size = sizeof(*s);
	keep(size);
	s->call.hdr.size = size;
	/* Wake the consumer only when this record crosses the threshold: a
	 * consumer that lags stays above it, and waking it on every record
	 * cost ~4.5 us per call (bench/run.py). */
	queued = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	flags = queued < cfg.wakeup_bytes && queued + size >= cfg.wakeup_bytes ?
		BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, s, size, flags))
		bump(UW_CNT_RING_FULL);
	else
		bump(UW_CNT_EMITTED);
out:
	bpf_map_push_elem(&free_slots, &idx, 0);
	return 0;
}

/* Hooks. The per-syscall tracepoints are the primary ones: they cost other
 * syscalls nothing. Where CONFIG_FTRACE_SYSCALLS is off: a kprobe pair on
 * the syscall where kprobes and bpf_probe_read_kernel are allowed (the
 * arguments sit in the syscall wrapper's pt_regs, kernel memory), else
 * raw_syscalls, which fires for every syscall and filters by number. The
 * loader switches off the pairs it does not use.
 *
 * Each exit has a _noloop twin without the TOCTOU re-read, loaded where
 * bpf_loop is missing: kernels older than callbacks (5.10 here) reject a
 * program that so much as references a loop callback ("number of funcs in
 * func_info doesn't match number of subprogs"), even in dead code, so
 * the reference must not be in the program at all. */
SEC("tracepoint/syscalls/sys_enter_io_uring_register")
int tracepoint__syscalls__sys_enter_io_uring_register(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_exit_io_uring_register")
int tracepoint__syscalls__sys_exit_io_uring_register(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, true);
}

SEC("tracepoint/syscalls/sys_exit_io_uring_register")
int tracepoint__syscalls__sys_exit_io_uring_register_noloop(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, false);
}

#define NR_io_uring_register 427   /* the same on every architecture */

SEC("tracepoint/raw_syscalls/sys_enter")
int tracepoint__raw_syscalls__sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->id != NR_io_uring_register)
		return 0;
	return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int tracepoint__raw_syscalls__sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->id != NR_io_uring_register)
		return 0;
	return on_exit(ctx->ret, true);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int tracepoint__raw_syscalls__sys_exit_noloop(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->id != NR_io_uring_register)
		return 0;
	return on_exit(ctx->ret, false);
}

SEC("ksyscall/io_uring_register")
int BPF_KSYSCALL(ksyscall__io_uring_register, int fd, unsigned int opcode, void *arg,
		 unsigned int nr_args)
{
	return on_enter(fd, opcode, (__u64)arg, nr_args);
}

SEC("kretsyscall/io_uring_register")
int BPF_KRETPROBE(kretsyscall__io_uring_register, long ret)
{
	return on_exit(ret, true);
}

SEC("kretsyscall/io_uring_register")
int BPF_KRETPROBE(kretsyscall__io_uring_register_noloop, long ret)
{
	return on_exit(ret, false);
}
