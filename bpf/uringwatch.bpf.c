// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * uringwatch: capture every io_uring_register(2) call with the user memory
 * behind `arg`, decoded per opcode by user space.
 *
 * sys_enter saves the arguments and a copy of the user memory the kernel is
 * about to read into a per-call slot; sys_exit adds the return value,
 * re-reads the inputs to spot changes made while the kernel was copying
 * them (TOCTOU), and sends the slot as one variable-sized record.
 *
 * One translation unit: this file holds that flow and the hooks; the
 * headers below hold the maps, the filters, the capture and the TOCTOU
 * compare; uringwatch.h the record layouts user space shares.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "uringwatch.h"
#include "uapi_newer.h"
#include "plans.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "verifier.h"
#include "maps.h"
#include "btf_anchors.h"
#include "filters.h"
#include "capture.h"
#include "record.h"
#include "toctou.h"
#include "identity.h"
#include "identity_check.h"
#include "fairness.h"
#include "rings.h"
#include "rings_before.h"
#include "targets.h"
#include "opfile.h"
#include "opcache.h"
#include "pbuf.h"

/* At exit: fill OUT regions, compare IN regions, copy the first INOUT
 * region's new contents into region 3. */
static __always_inline void finish_args(struct uw_slot *s, const bool loop)
{
	const struct uw_plan *p = plan_of(s->call.opcode);
	__u32 dir, off = 0, i;
	static const __u32 max[3] = { UW_HEAD_MAX, UW_ARR_A_MAX, UW_ARR_B_MAX };
	bool copied = false;    /* region 3: the first INOUT region's new contents */

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
		} else if (!copied) {
			struct uw_region *x = &s->call.region[3];
			__u32 total = s->call.region[0].len + s->call.region[1].len +
				      s->call.region[2].len + ident_bytes(&s->call);

			copied = true;
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
	if (!copied)
		no_region(&s->call.region[3]);
}

/* Gives tid's call a slot, in *idx: a free one, entered in the in-flight
 * map with one update when the thread has no call there (the common case),
 * or the slot of its previous call if that never reached exit. False if
 * it gets none: then exit finds a marker, and does not count it again. */
static __always_inline bool take_slot(__u32 tid, __u32 *idx)
{
	bool popped = !bpf_map_pop_elem(&free_slots, idx);
	__u32 *old, marker = NO_SLOT;

	if (popped && !bpf_map_update_elem(&inflight, &tid, idx, BPF_NOEXIST))
		return true;
	old = bpf_map_lookup_elem(&inflight, &tid);
	if (old && *old != NO_SLOT) {
		/* the previous call of this thread never reached exit */
		if (popped)
			bpf_map_push_elem(&free_slots, idx, 0);
		*idx = *old;
		bump(UW_CNT_NO_EXIT);
		return true;
	}
	if (popped && old) {
		*old = *idx;    /* its previous call got no slot; this one does */
		return true;
	}
	if (popped)     /* the in-flight map is full */
		bpf_map_push_elem(&free_slots, idx, 0);
	else
		bpf_map_update_elem(&inflight, &tid, &marker, BPF_ANY);
	return false;
}

/* Syscall entry: filter, take a slot, save the arguments and user memory. */
static __always_inline int on_enter(__s32 fd, __u32 opcode, __u64 arg, __u32 nr_args,
				    const bool btf)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, idx;
	struct uw_slot *s;

	if (!task_allowed(id) || !opcode_allowed(opcode)) {
		bump(UW_CNT_FILTERED);
		return 0;
	}
	if (!take_slot(tid, &idx)) {
		fair__lost_at_enter(id >> 32);
		return 0;
	}
	s = bpf_map_lookup_elem(&slots, &idx);
	if (!s)
		return 0;
	/* Not cleared: each field is set once (capture_args the regions and
	 * flags, resolve_fds the identities); the record's header at exit. */
	s->call.ts_enter = bpf_ktime_get_boot_ns();
	s->call.pid = id >> 32;
	s->call.tid = tid;
	s->call.fd = fd;
	s->call.opcode = opcode;
	s->call.arg = arg;
	s->call.nr_args = nr_args;
	s->call.nchanged = 0;
	capture_args(s);
	resolve_fds(s, idx, btf);
	return 0;
}

/* Takes tid's call off the in-flight map: false if it had none, else its
 * slot in *idx (NO_SLOT for a call that got none), owned by the caller:
 * only the one whose delete succeeds may give the slot back. */
static __always_inline bool end_call(__u32 tid, __u32 *idx)
{
	__u32 *ip = bpf_map_lookup_elem(&inflight, &tid);

	if (!ip)
		return false;
	*idx = *ip;
	return !bpf_map_delete_elem(&inflight, &tid);
}

/* Syscall exit: add the result, re-read, send one record with the
 * caller's context unless fairness coalesces or drops it (counted either
 * way). */
static __always_inline int on_exit(long ret, const bool loop, const bool btf)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), idx;
	__u64 uid_gid = bpf_get_current_uid_gid(), size, data_len, sig = 0;
	struct uw_proc *p = 0;
	struct uw_slot *s;
	__u32 at;
	bool sent;

	if (!end_call(tid, &idx)) {
		/* With filters a miss is most likely a filtered call: only an
		 * unfiltered tracer can tell a missed enter. */
		if (!any_filter())
			bump(UW_CNT_NO_ENTER);
		return 0;
	}
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
	check_files(s, idx, btf);
	resolve_mems(s, idx, btf, loop);
	finish_args(s, loop);

	data_len = s->call.region[0].len + s->call.region[1].len +
		   s->call.region[2].len + ident_bytes(&s->call) + s->call.region[3].len;
	if (data_len > UW_DATA_MAX)
		data_len = UW_DATA_MAX;
	p = fair__proc(s->call.pid, s->call.ts_exit, s->call.uid, s->call.cgroup_id);
	if (cfg.fair && !fair__admit(p, s, &sig, loop))
		goto out;
	at = uw_pack(idx, data_len);
	size = UW_CALL3_MAX - at + data_len;
	keep(at);
	if (at > UW_CALL3_MAX - sizeof(struct uw_call3))
		goto out;
	keep(size);
	if (size > UW_CALL3_MAX + UW_DATA_MAX)
		goto out;
	sent = emit(&s->head[at], size);
	if (cfg.fair)
		fair__sent(p, s, sig, sent);
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
 * the reference must not be in the program at all. Likewise enter and
 * exit have _btf twins that read identities through the bpf_rdonly_cast
 * kfunc (6.2+), which older kernels refuse to see referenced; they are
 * built into uringwatch_btf.bpf.o only (UW_KFUNC, see identity.h). */
#define ENTER_ONE(sec, name, ctx_t, guard, btf)				\
SEC(sec) int name(ctx_t *ctx)							\
{										\
	guard;									\
	return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], btf); \
}
#define EXIT_ONE(sec, name, ctx_t, guard, loop, btf)				\
SEC(sec) int name(ctx_t *ctx) { guard; return on_exit(ctx->ret, loop, btf); }

#ifdef UW_KFUNC
#define BTF_TWINS(sec_in, sec_out, name_in, name_out, in_t, out_t, guard)	\
	ENTER_ONE(sec_in, name_in##_btf, in_t, guard, true)			\
	EXIT_ONE(sec_out, name_out##_btf, out_t, guard, true, true)
#else
#define BTF_TWINS(sec_in, sec_out, name_in, name_out, in_t, out_t, guard)
#endif

#define HOOK(sec_in, sec_out, name_in, name_out, guard)				\
	ENTER_ONE(sec_in, name_in, struct trace_event_raw_sys_enter, guard, false) \
	EXIT_ONE(sec_out, name_out, struct trace_event_raw_sys_exit, guard, true, false) \
	EXIT_ONE(sec_out, name_out##_noloop, struct trace_event_raw_sys_exit, guard, false, false) \
	BTF_TWINS(sec_in, sec_out, name_in, name_out, struct trace_event_raw_sys_enter, \
		  struct trace_event_raw_sys_exit, guard)

#define NR_io_uring_register 427   /* the same on every architecture */
#define ONLY_IO_URING_REGISTER if (ctx->id != NR_io_uring_register) return 0

HOOK("tracepoint/syscalls/sys_enter_io_uring_register",
     "tracepoint/syscalls/sys_exit_io_uring_register",
     tracepoint__syscalls__sys_enter_io_uring_register,
     tracepoint__syscalls__sys_exit_io_uring_register, )
HOOK("tracepoint/raw_syscalls/sys_enter", "tracepoint/raw_syscalls/sys_exit",
     tracepoint__raw_syscalls__sys_enter, tracepoint__raw_syscalls__sys_exit,
     ONLY_IO_URING_REGISTER)

SEC("ksyscall/io_uring_register")
int BPF_KSYSCALL(ksyscall__io_uring_register, int fd, unsigned int opcode, void *arg,
		 unsigned int nr_args)
{
	return on_enter(fd, opcode, (__u64)arg, nr_args, false);
}

#ifdef UW_KFUNC
SEC("ksyscall/io_uring_register")
int BPF_KSYSCALL(ksyscall__io_uring_register_btf, int fd, unsigned int opcode, void *arg,
		 unsigned int nr_args)
{
	return on_enter(fd, opcode, (__u64)arg, nr_args, true);
}
#endif

SEC("kretsyscall/io_uring_register")
int BPF_KRETPROBE(kretsyscall__io_uring_register, long ret)
{
	return on_exit(ret, true, false);
}

SEC("kretsyscall/io_uring_register")
int BPF_KRETPROBE(kretsyscall__io_uring_register_noloop, long ret)
{
	return on_exit(ret, false, false);
}

#ifdef UW_KFUNC
SEC("kretsyscall/io_uring_register")
int BPF_KRETPROBE(kretsyscall__io_uring_register_btf, long ret)
{
	return on_exit(ret, true, true);
}
#endif

/* A thread ends. With the kprobes hook, a call's exit is missed when more
 * calls are in flight than the kretprobe has instances for (its
 * maxactive: 10 on two CPUs). The thread's next call frees its slot and
 * counts no_exit; this does the same when the thread ends first, so the
 * slot is not lost and the call not left uncounted. With fairness, the
 * last thread of a process frees the process's state (fair__ended).
 * Loaded with the kprobes hook or fairness. */
SEC("tracepoint/sched/sched_process_exit")
int tracepoint__sched__sched_process_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 idx;

	if (cfg.fair)
		fair__ended(id >> 32);
	act__ended(id);
	if (!end_call((__u32)id, &idx) || idx == NO_SLOT)
		return 0;
	bump(UW_CNT_NO_EXIT);
	bpf_map_push_elem(&free_slots, &idx, 0);
	return 0;
}

/* A ring's life. io_uring_setup's tracepoints bracket the call, and
 * io_uring_create fires inside it once the ring exists, with its address;
 * io_uring_register fires inside a register call that found its ring. The
 * operations' tracepoint has a typed request (`tp_btf`) from 6.0, named
 * io_uring_submit_sqe until 6.4; the loader picks the one this kernel has
 * and loads neither where the request is not its first argument. */
SEC("tracepoint/syscalls/sys_enter_io_uring_setup")
int tracepoint__syscalls__sys_enter_io_uring_setup(struct trace_event_raw_sys_enter *ctx)
{
	return on_setup_enter(ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_io_uring_setup")
int tracepoint__syscalls__sys_exit_io_uring_setup(struct trace_event_raw_sys_exit *ctx)
{
	return on_setup_exit(ctx->ret);
}

SEC("tracepoint/io_uring/io_uring_create")
int tracepoint__io_uring__io_uring_create(struct trace_event_raw_io_uring_create *ctx)
{
	return on_ring_created((__u64)ctx->ctx);
}

/* A ring is freed in this work item once its last user has gone (5.10 to
 * 7.2); its address may then be another ring's. A kprobe, or where the
 * kernel has none an fentry program (the loader picks one). */
#define RING_OF_EXIT_WORK(work) \
	(addr_of(work) - bpf_core_field_offset(struct io_ring_ctx, exit_work))

SEC("kprobe/io_ring_exit_work")
int BPF_KPROBE(kprobe__io_ring_exit_work, struct work_struct *work)
{
	return on_ring_freed(RING_OF_EXIT_WORK(work));
}

SEC("fentry/io_ring_exit_work")
int BPF_PROG(fentry__io_ring_exit_work, struct work_struct *work)
{
	return on_ring_freed(RING_OF_EXIT_WORK(work));
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(tp_btf__io_uring_submit_req, struct io_kiocb *req)
{
	on_submit(req, 0, true);
	return act__submit(req);
}

SEC("tp_btf/io_uring_submit_sqe")
int BPF_PROG(tp_btf__io_uring_submit_sqe, struct io_kiocb *req)
{
	on_submit(req, 0, true);
	return act__submit(req);
}

/* 7.0+ rings without SQE op restrictions: those deny in io_init_req
 * before prep (whose per-op data io_init_fail_req then clears), a BPF
 * filter after it, so only there is the request's target as prepared. */
struct io_restriction___v7 { bool op_registered; } __attribute__((preserve_access_index));
struct io_ring_ctx___v7 { struct io_restriction___v7 restrictions; }
	__attribute__((preserve_access_index));

static __always_inline bool denied_after_prep(struct io_kiocb *req)
{
	struct io_ring_ctx___v7 *ctx = (void *)req->ctx;

	/* a BTF-typed load: no stack for a probe read (on_submit has it all) */
	return bpf_core_field_exists(ctx->restrictions.op_registered) &&
	       !ctx->restrictions.op_registered;
}

/* A request refused at submission (6.0+: the request second). Those
 * refused with -EACCES, by a BPF filter or the ring's restrictions, are
 * ops marked denied; after prep also actions, whose completion gives them
 * the -EACCES. Other failures are the caller's mistakes: not counted. */
SEC("tp_btf/io_uring_req_failed")
int BPF_PROG(tp_btf__io_uring_req_failed, const struct io_uring_sqe *sqe, struct io_kiocb *req,
	     int error)
{
	if (error != -13)       /* EACCES */
		return 0;
	/* two copies with `act` constant: one that varies costs stack */
	if (!denied_after_prep(req))
		return on_submit(req, UW_OP_DENIED, false);
	on_submit(req, UW_OP_DENIED, true);
	return act__submit(req);
}

/* A completion, for the result of an action waiting for it (targets.h).
 * Its arguments changed in 6.3: before, the result itself; since, the CQE.
 * The loader picks the one this kernel's BTF describes. */
SEC("tp_btf/io_uring_complete")
int BPF_PROG(tp_btf__io_uring_complete, void *ring, void *req, struct io_uring_cqe *cqe)
{
	return act__complete((__u64)req, cqe->res, cqe->flags);
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(tp_btf__io_uring_complete_v61, void *ring, void *req, __u64 user_data, int res,
	     unsigned int cflags)
{
	return act__complete((__u64)req, res, cflags);
}

/* An operation refused at prep (bad fd, bad flags, unknown opcode): it
 * never reaches the submit tracepoint; reported as an action (targets.h). */
/* The same refusals for targets: an action with its errno, read from the
 * SQE, for each one the program above makes no action of. */
SEC("tp_btf/io_uring_req_failed")
int BPF_PROG(tp_btf__io_uring_req_refused, const struct io_uring_sqe *sqe, struct io_kiocb *req,
	     int error)
{
	if (error == -13 && denied_after_prep(req))
		return 0;
	return act__refused(sqe, req, error);
}

/* Every task's open files, once at start: the rings made before tracing
 * (rings_before.h). Run by user space through an iterator fd. */
SEC("iter/task_file")
int iter__task_file(struct bpf_iter__task_file *ctx)
{
	return ring_fd__list(ctx->meta->seq, ctx->task, ctx->fd, ctx->file);
}

/* The slot of the register call the current thread is in. */
static __always_inline struct uw_slot *registering(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), *idx = bpf_map_lookup_elem(&inflight, &tid);

	return idx && *idx != NO_SLOT ? bpf_map_lookup_elem(&slots, idx) : 0;
}

/* Inside a register call that found its ring: which ring, and for a
 * personality the credentials the kernel saves (the caller's). */
static __always_inline int ring__register(struct trace_event_raw_io_uring_register *ctx,
					  struct uw_slot *s)
{
	struct ring_state *st;

	s->call.ring.ring_id = ring_id_of((__u64)ctx->ctx, &st);
	if (st && ctx->ret >= 0)
		st->registered = 1;     /* its free is told to user space */
	/* identity_check.h reads its tables; nonzero, the ring ref is sent */
	s->ring_ctx = (__u64)ctx->ctx;
	s->call.ring.cred_id = ctx->opcode == IORING_REGISTER_PERSONALITY && cfg.use_task_btf ?
			       id_of_ptr(bpf_get_current_task_btf()->cred) : 0;
	return 0;
}

SEC("tracepoint/io_uring/io_uring_register")
int tracepoint__io_uring__io_uring_register(struct trace_event_raw_io_uring_register *ctx)
{
	struct uw_slot *s = registering();

	return s ? ring__register(ctx, s) : 0;
}

/* The same and bpf/pbuf.h's check of buffer rings, as one program on the
 * tracepoint (two cost each call a second run and lookups): loaded instead
 * of the one above where the kernel has bpf_find_vma (hooks.pbuf_programs). */
SEC("tracepoint/io_uring/io_uring_register")
int tracepoint__io_uring__io_uring_register_pbuf(struct trace_event_raw_io_uring_register *ctx)
{
	struct uw_slot *s = registering();

	if (!s)
		return 0;
	ring__register(ctx, s);
	return pbuf__register(ctx, s);
}
