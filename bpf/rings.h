/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A ring's life beyond registration: its creation (io_uring_setup), its
 * id, and the operations it accepts, summarised by what they use.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_RINGS_H
#define URINGWATCH_RINGS_H

/* Low bits of io_kiocb.flags mirror the SQE's IOSQE_* bits, the same on
 * every kernel; the higher REQ_F_* bits move between releases. */
#define REQ_F_FIXED_FILE (1ULL << 0)
#define REQ_F_BUFFER_SELECT (1ULL << 5)
#define PF_IO_WORKER 0x00000010   /* io-wq and SQPOLL threads */

/* setups in flight: tid -> the record being built */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct uw_ring);
} setups SEC(".maps");

/* Who a ring's operations are kept for by the filters besides their
 * submitter (filters.h, who_allowed). */
struct ring_who {
	__u64 cgroup_id;
	__u32 tgid;
	__u32 uid;
	char comm[UW_COMM_LEN];
};

/* A ring made while tracing: its id and its creator. The kernel reuses a
 * freed ring's address at once (2,000 rings made and closed one after the
 * other had 393 addresses), so an id is not the address's: it is drawn at
 * creation from a per-run generation, kept here by address, and forgotten
 * when the ring is freed (io_ring_exit_work) or its address made again
 * into a ring. A ring made before tracing has no entry; its id is its
 * address's. Not LRU: a live ring's id must not change; when full (32768
 * rings made while tracing and not seen freed), a new ring's id is its
 * address's too, and it has no creator. */
struct ring_state {
	__u64 id;
	struct ring_who creator;
	__u32 registered;     /* a register call on it succeeded */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, struct ring_state);
} ring_states SEC(".maps");

/* Ids of rings freed that user space's ledger may hold (Ledger.freed):
 * those a register call succeeded on, and those made before tracing or
 * while ring_states was full (no state to tell). User space drains it
 * every counting interval; when full, a free is counted (frees_lost) and
 * its ring's registrations wait for the ledger's own bound. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4096);
	__type(value, __u64);
} rings_freed SEC(".maps");

/* generations drawn, per CPU: no atomic that returns a value before 5.12 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ring_gen SEC(".maps");

/* The summary of uses: user space reads the counts every interval and
 * takes out the keys unused for a whole interval (rings closed, processes
 * gone). Not LRU: an eviction would lose a count. When full, operations
 * are counted in spills instead. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct uw_op_key);
	__type(value, struct uw_use);
} uses SEC(".maps");

/* Uses counted while `uses` is full, by process, ring, opcode and the
 * submitter's ids only (UW_OP_SPILLED): a first use here is still reported.
 * When this is full too, ops_untracked counts them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct uw_op_key);
	__type(value, struct uw_use);
} spills SEC(".maps");

/* Where a kernel pointer becomes a number: the verifier forbids arithmetic
 * on pointers, but a pointer stored in a map value reads back as a scalar. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ptr_scratch SEC(".maps");

/* A keyed mix of a kernel address (two rounds of the splitmix64 finaliser
 * with a per-run key between them): stable for one tracer run, and no
 * kernel address in any record. */
static __always_inline __u64 mix64(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static __always_inline __u64 id_of_addr(__u64 addr)
{
	return addr ? mix64(mix64(addr ^ cfg.id_key[0]) + cfg.id_key[1]) | 1 : 0;
}

/* A kernel pointer as a number */
static __always_inline __u64 addr_of(const void *ptr)
{
	__u32 zero = 0;
	__u64 *slot = bpf_map_lookup_elem(&ptr_scratch, &zero);

	if (!slot)
		return 0;
	*(const void **)slot = ptr;
	return *(volatile __u64 *)slot;   /* reloaded: a scalar */
}

static __always_inline __u64 id_of_ptr(const void *ptr)
{
	return id_of_addr(addr_of(ptr));
}

/* A generation's id: the mix is a bijection, so no two generations of a
 * run share an id. */
static __always_inline __u64 id_of_gen(__u64 gen)
{
	__u64 id = mix64(mix64(gen ^ cfg.id_key[1]) + cfg.id_key[0]);

	return id ? id : 1;
}

/* bpf/opcache.h: the operations' fast path, and what makes it miss. */
static __always_inline bool opc__hit(struct io_kiocb *req, struct task_struct *task,
				     __u64 pid_tgid);
static __always_inline void opc__keep(const struct uw_op_key *k, const struct uw_use *u,
				      __u64 now);
static __always_inline void opc__bump(void);
static __always_inline __u64 opc__target(struct uw_op_key *k, struct io_kiocb *req);

/* The id of the ring at this address (its io_ring_ctx), and its state if
 * it was made while tracing. */
static __always_inline __u64 ring_id_of(__u64 ctx, struct ring_state **state)
{
	struct ring_state *s = bpf_map_lookup_elem(&ring_states, &ctx);

	if (state)
		*state = s;
	return s ? s->id : id_of_addr(ctx);
}

/* Ring and operation events are not register calls: filters on register
 * opcodes or on failed calls keep none of them. */
static __always_inline bool ring_events_allowed(__u64 pid_tgid)
{
	return !cfg.targ_opcodes && !cfg.targ_failed && task_allowed(pid_tgid);
}

/* io_uring_setup enter: remember what was asked. */
static __always_inline int on_setup_enter(__u32 entries, __u64 params)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct uw_ring r = {};

	if (!ring_events_allowed(id))
		return 0;
	r.hdr.kind = UW_KIND_RING;
	r.hdr.abi = UW_ABI_VERSION;
	r.hdr.size = sizeof(r);
	r.ts_enter = bpf_ktime_get_boot_ns();
	r.pid = id >> 32;
	r.tid = tid;
	r.entries = entries;
	r.params_addr = params;
	bpf_map_update_elem(&setups, &tid, &r, BPF_ANY);
	return 0;
}

/* io_uring_create, inside setup once the ring exists: its address, which
 * gets a new id even if a freed ring had it (its free was not seen). */
static __always_inline int on_ring_created(__u64 ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, zero = 0;
	struct uw_ring *r = bpf_map_lookup_elem(&setups, &tid);
	__u64 *gen = bpf_map_lookup_elem(&ring_gen, &zero);
	struct ring_state st = {};

	if (!gen)
		return 0;
	*gen += 1;
	st.id = id_of_gen(*gen << 16 | bpf_get_smp_processor_id());
	st.creator.tgid = id >> 32;
	st.creator.uid = (__u32)bpf_get_current_uid_gid();
	st.creator.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(st.creator.comm, sizeof(st.creator.comm));
	if (bpf_map_update_elem(&ring_states, &ctx, &st, BPF_ANY))
		st.id = id_of_addr(ctx);      /* full: see ring_states */
	if (r)
		r->ring_id = st.id;
	opc__bump();
	return 0;
}

/* io_ring_exit_work, which frees the ring once its last user is gone:
 * its id forgotten, and told to user space where its ledger may hold it. */
static __always_inline int on_ring_freed(__u64 ctx)
{
	struct ring_state *st;
	__u64 id = ring_id_of(ctx, &st);

	if ((!st || st->registered) && bpf_map_push_elem(&rings_freed, &id, 0))
		bump(UW_CNT_FREES_LOST);
	bpf_map_delete_elem(&ring_states, &ctx);
	opc__bump();
	return 0;
}

/* io_uring_setup exit: the result, the params the kernel wrote back. */
static __always_inline int on_setup_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct uw_ring *r = bpf_map_lookup_elem(&setups, &tid);

	if (!r)
		return 0;
	r->ts_exit = bpf_ktime_get_boot_ns();
	r->ret = ret;
	r->uid = (__u32)uid_gid;
	r->gid = uid_gid >> 32;
	r->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	if (cfg.use_task_btf) {
		r->ppid = bpf_get_current_task_btf()->real_parent->tgid;
		r->flags |= UW_F_PPID;
	}
	if (bpf_probe_read_user(r->params, sizeof(r->params), (void *)r->params_addr)) {
		r->flags |= UW_F_EXIT_FAULT;
		bump(UW_CNT_READ_FAULT);
	}
	if (ret < 0)
		r->ring_id = 0;
	fair__emit(r, sizeof(*r), UW_REC_RING, false);
	bpf_map_delete_elem(&setups, &tid);
	return 0;
}

/* kernel_cap_t was two u32s before 6.3, one u64 since. */
typedef struct { __u32 cap[2]; } kernel_cap_t___old;
struct cred___old {
	kernel_cap_t___old cap_effective;
} __attribute__((preserve_access_index));

static __always_inline __u64 cap_effective(const struct cred *c)
{
	if (bpf_core_field_exists(c->cap_effective.val))
		return c->cap_effective.val;
	return ((const struct cred___old *)c)->cap_effective.cap[0] |
	       (__u64)((const struct cred___old *)c)->cap_effective.cap[1] << 32;
}

static __always_inline bool same_creds(const struct cred *a, const struct cred *b)
{
	return a->uid.val == b->uid.val && a->euid.val == b->euid.val &&
	       a->suid.val == b->suid.val && a->fsuid.val == b->fsuid.val &&
	       a->gid.val == b->gid.val && a->egid.val == b->egid.val &&
	       cap_effective(a) == cap_effective(b);
}

/* The personality an operation runs under, or none. req->creds holds it
 * only while REQ_F_CREDS is set: a recycled request keeps an old pointer
 * (seen on 6.12). The flag's bit moves between releases, and its enum has
 * no name CO-RE could find it by: user space reads it from the kernel's
 * BTF into cfg.req_creds_bit (64 or more: unknown, no personality shown). */
static __always_inline const struct cred *req_creds(struct io_kiocb *req)
{
	__u64 flags = req->flags;
	__u32 bit = cfg.req_creds_bit;

	if (bit >= 64 || !(flags >> bit & 1))
		return 0;
	return req->creds;
}

/* The process an operation is submitted for: the submitter, or for an
 * SQPOLL thread (a thread of the ring's creator) that process's leader,
 * whose creds are its current ones, not those the thread was made with. */
static __always_inline struct task_struct *owner_of(struct task_struct *task)
{
	return task->flags & PF_IO_WORKER ? task->group_leader : task;
}

/* bpf/opfile.h: what an fd or fixed slot names, in the key and a first use's record */
static __always_inline __u64 op__target(struct uw_op_key *k, struct io_kiocb *req);
static __always_inline void op__ident(struct uw_op *op, __u64 file, __s32 fd, __u32 target);

/* What an operation uses, who it is submitted for (the owner's current
 * ids), and whether it runs with other creds than those: a personality's,
 * or an SQPOLL thread's kept from the ring's creation. */
static __always_inline void use_key(struct uw_use_key *k, struct io_kiocb *req,
				    struct task_struct *task, __u64 ring_id)
{
	const struct cred *creds = req_creds(req), *own = owner_of(task)->cred;
	const struct cred *run = creds ? creds : task->cred;
	__u64 flags = req->flags;

	k->ring_id = ring_id;
	k->opcode = req->opcode;
	k->euid = own->euid.val;
	k->uid = own->uid.val;
	k->pid = bpf_get_current_pid_tgid() >> 32;
	k->file_slot = -1;
	k->buf = -1;
	if (flags & REQ_F_FIXED_FILE) {
		k->file_slot = req->cqe.fd;
		k->flags |= UW_OP_FIXED_FILE;
	}
	if (flags & REQ_F_BUFFER_SELECT) {
		k->buf = req->buf_index;
		k->flags |= UW_OP_BUF_SELECT;
	} else if (k->opcode == IORING_OP_READ_FIXED || k->opcode == IORING_OP_WRITE_FIXED) {
		k->buf = req->buf_index;
		k->flags |= UW_OP_FIXED_BUF;
	}
	if (creds) {
		k->cred_id = id_of_ptr(creds);
		k->flags |= UW_OP_CREDS;
	}
	if (!same_creds(run, own))
		k->flags |= UW_OP_CREDS_DIFFER;
	if (task->flags & PF_IO_WORKER)
		k->flags |= UW_OP_SQ_THREAD;
}

/* An op record's size: a key with no target makes the short record, one
 * with no input (SPLICE/TEE's), target ring (MSG_RING's) nor destination
 * (a send's) the one before file_in_id. */
static __always_inline __u32 op_size(__u32 target)
{
	return target & (UW_OPT_IN | UW_OPT_RING | UW_OPT_DEST) ? sizeof(struct uw_op) :
	       target ? UW_OP_TARGET : UW_OP_SHORT;
}

/* The op's record: the owner's creds as the submitter's, and the creds it
 * ran with where they are not those (a personality's, an SQ thread's).
 * A key with a target makes the longer record; a new key with a plain fd
 * (`ident`) carries its file's identity. Built in op_scratch: the stack
 * has no room for it. */
static __always_inline void send_op(struct uw_op_key *ok, struct io_kiocb *req,
				    struct task_struct *task, __u64 now, __u32 reason,
				    __u32 creator, __u64 file, bool ident)
{
	const struct cred *creds = req_creds(req), *own = owner_of(task)->cred;
	__u64 id = bpf_get_current_pid_tgid();
	struct uw_use_key *k = &ok->use;
	__u32 zero = 0;
	struct uw_op *op = bpf_map_lookup_elem(&op_scratch, &zero);

	if (!op)
		return;
	/* only what is sent is cleared: the short records */
	if (ok->target & (UW_OPT_IN | UW_OPT_RING | UW_OPT_DEST))
		__builtin_memset(op, 0, sizeof(*op));
	else if (ok->target)
		__builtin_memset(op, 0, UW_OP_TARGET);
	else
		__builtin_memset(op, 0, UW_OP_SHORT);
	op->hdr.kind = UW_KIND_OP;
	op->hdr.abi = UW_ABI_VERSION;
	op->hdr.size = op_size(ok->target);
	op->key = *k;
	op->ts = now;
	op->first_ts = now;
	op->count = 1;
	op->cgroup_id = bpf_get_current_cgroup_id();
	op->cap_effective = cap_effective(own);
	op->pid = id >> 32;
	op->tid = (__u32)id;
	op->creator_pid = creator;
	if (!creds && (k->flags & UW_OP_CREDS_DIFFER))
		creds = task->cred;
	if (creds) {
		op->cred_uid = creds->uid.val;
		op->cred_euid = creds->euid.val;
		op->cred_cap_effective = cap_effective(creds);
	}
	op->reason = reason;
	bpf_get_current_comm(op->comm, sizeof(op->comm));
	op->file_id = ok->file_id;
	op->cmd_op = ok->cmd_op;
	op->target = ok->target;
	op->file_in_id = ok->file_in_id;
	if (ident && (ok->target & (UW_OPT_FD | UW_OPT_IN | UW_OPT_DEST)))
		op__ident(op, file, req->cqe.fd, ok->target);
	fair__emit(op, op_size(ok->target), UW_REC_OP, k->flags & UW_OP_CREDS_DIFFER);
}

/* bpf/targets.h: an operation that opens or changes something is also
 * reported each, with its target and result. */
static __always_inline void act__key(struct uw_use_key *k, __u64 now, __u32 creator);

/* Filters follow the ring: an op is kept for its submitter, for the
 * process an SQPOLL thread submits for, or for the ring's creator. */
static __always_inline bool op_allowed(__u64 pid_tgid, struct task_struct *task,
				       struct ring_state *st)
{
	struct task_struct *leader;
	char comm[UW_COMM_LEN];
	int i;

	if (cfg.targ_opcodes || cfg.targ_failed)
		return false;
	if (task_allowed(pid_tgid))
		return true;
	if (st && who_allowed(st->creator.tgid, st->creator.uid, st->creator.cgroup_id,
			      st->creator.comm))
		return true;
	if (!(task->flags & PF_IO_WORKER))
		return false;
	leader = task->group_leader;
#pragma unroll
	for (i = 0; i < UW_COMM_LEN; i++)
		comm[i] = leader->comm[i];
	return who_allowed(pid_tgid >> 32, leader->cred->uid.val,
			   bpf_get_current_cgroup_id(), comm);
}

/* A new key's first count, built here: the submit programs' stack has
 * no room left for it beside op__ident's calls. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_use);
} use_scratch SEC(".maps");

static __always_inline struct uw_use *fresh_use(__u64 pid_tgid, __u64 now)
{
	__u32 zero = 0;
	struct uw_use *u = bpf_map_lookup_elem(&use_scratch, &zero);

	if (!u)
		return 0;
	u->count = 1;
	u->first_ts = now;
	u->last_ts = now;
	u->pid = pid_tgid >> 32;
	u->tid = (__u32)pid_tgid;
	u->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(u->comm, sizeof(u->comm));
	return u;
}

/* `uses` is full: count the op by process, ring and opcode alone (no
 * target); true if that is a first use. Not inlined: its key is on a
 * stack of its own, not on the submit programs' (op__ident's calls go
 * deepest from there). */
static __noinline bool spill(struct uw_op_key *ok, __u64 pid_tgid, __u64 now)
{
	struct uw_use_key *k = &ok->use;
	struct uw_op_key s = {};
	struct uw_use *u, *fresh;

	s.use.ring_id = k->ring_id;
	s.use.pid = k->pid;
	s.use.uid = k->uid;
	s.use.euid = k->euid;
	s.use.opcode = k->opcode;
	s.use.file_slot = -1;
	s.use.buf = -1;
	s.use.flags = (k->flags & (UW_OP_SQ_THREAD | UW_OP_CREDS_DIFFER)) | UW_OP_SPILLED;
	u = bpf_map_lookup_elem(&spills, &s);
	if (!u) {
		fresh = fresh_use(pid_tgid, now);
		if (fresh && !bpf_map_update_elem(&spills, &s, fresh, BPF_NOEXIST))
			return true;
		u = bpf_map_lookup_elem(&spills, &s);
	}
	if (u) {
		__sync_fetch_and_add(&u->count, 1);
		u->last_ts = now;
	} else {
		bump(UW_CNT_OPS_UNTRACKED);
	}
	return false;
}

/* An operation the ring accepted (or `denied`: refused at submission):
 * count it under its key; report the first use of a key (every use with
 * ops_all); with `act`, keep its action for act__submit. A new key includes the
 * owner's ids and whether the op's creds differ from the owner's, so an
 * operation run under someone else's credentials is always reported; with
 * `uses` full, such ops are reported each, and first uses by process, ring
 * and opcode still are. */
static __always_inline int on_submit(struct io_kiocb *req, const __u8 denied, bool act)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid(), now;
	struct ring_state *st;
	struct uw_op_key k = {};
	struct uw_use *u, *fresh;
	__u64 ring, file;
	__u32 creator;
	bool first;

	if (!denied && opc__hit(req, task, id))
		return 0;
	now = bpf_ktime_get_boot_ns();
	ring = ring_id_of(addr_of(req->ctx), &st);
	creator = st ? st->creator.tgid : 0;
	if (!op_allowed(id, task, st))
		return 0;
	use_key(&k.use, req, task, ring);
	/* the file the fingerprint read, not read again: a dup2 in between
	 * would pair the fingerprint with another file's key */
	k.use.flags |= denied;      /* before op__target: a denied send has no destination */
	file = denied ? op__target(&k, req) : opc__target(&k, req);
	if (act)
		act__key(&k.use, now, creator);
	u = bpf_map_lookup_elem(&uses, &k);
	if (!u) {
		fresh = fresh_use(id, now);
		if (fresh && !bpf_map_update_elem(&uses, &k, fresh, BPF_NOEXIST)) {
			if (!denied)
				opc__keep(&k, fresh, now);
			send_op(&k, req, task, now, cfg.ops_all ? UW_OP_EACH : UW_OP_FIRST, creator,
				file, true);
			return 0;
		}
		u = bpf_map_lookup_elem(&uses, &k);   /* another CPU added it first? */
	}
	if (u) {
		__sync_fetch_and_add(&u->count, 1);
		u->last_ts = now;
		if (cfg.ops_all)
			send_op(&k, req, task, now, UW_OP_EACH, creator, file, false);
		if (!denied)
			opc__keep(&k, u, now);
		return 0;
	}
	first = spill(&k, id, now);
	/* a spilled op is counted without its target: its record has none */
	k.file_id = 0;
	k.cmd_op = 0;
	k.target = 0;
	k.file_in_id = 0;
	if (first || cfg.ops_all || (k.use.flags & UW_OP_CREDS_DIFFER))
		send_op(&k, req, task, now, first && !cfg.ops_all ? UW_OP_FIRST : UW_OP_EACH,
			creator, 0, false);
	return 0;
}

#endif
