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

/* ring id -> its creator's tgid, for operations submitted elsewhere (an
 * SQPOLL thread, another process holding the ring) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} creators SEC(".maps");

/* The summary of uses: user space reads the counts every interval. Not
 * LRU: an eviction would lose a count; a full map counts ops_untracked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct uw_use_key);
	__type(value, struct uw_use);
} uses SEC(".maps");

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

static __always_inline __u64 id_of_ptr(const void *ptr)
{
	__u32 zero = 0;
	__u64 *slot = bpf_map_lookup_elem(&ptr_scratch, &zero);

	if (!slot)
		return 0;
	*(const void **)slot = ptr;
	return id_of_addr(*(volatile __u64 *)slot);   /* reloaded: a scalar */
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

/* io_uring_create, inside setup once the ring exists: its address. */
static __always_inline int on_ring_created(__u64 ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	struct uw_ring *r = bpf_map_lookup_elem(&setups, &tid);
	__u64 ring = id_of_addr(ctx);

	bpf_map_update_elem(&creators, &ring, &tgid, BPF_ANY);
	if (r)
		r->ring_id = ring;
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
	emit(r, sizeof(*r));
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

/* What an operation uses; the task's creds and the op's personality. */
static __always_inline void use_key(struct uw_use_key *k, struct io_kiocb *req,
				    struct task_struct *task)
{
	const struct cred *creds = req_creds(req), *cur = task->cred;
	__u64 flags = req->flags;

	k->ring_id = id_of_ptr(req->ctx);
	k->opcode = req->opcode;
	k->euid = cur->euid.val;
	k->uid = cur->uid.val;
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
		if (!same_creds(creds, cur))
			k->flags |= UW_OP_CREDS_DIFFER;
	}
	if (task->flags & PF_IO_WORKER)
		k->flags |= UW_OP_SQ_THREAD;
}

static __always_inline void send_op(struct uw_use_key *k, struct io_kiocb *req,
				    struct task_struct *task, __u64 now, __u32 reason)
{
	const struct cred *creds = req_creds(req), *cur = task->cred;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 *creator = bpf_map_lookup_elem(&creators, &k->ring_id);
	struct uw_op op = {};

	op.hdr.kind = UW_KIND_OP;
	op.hdr.abi = UW_ABI_VERSION;
	op.hdr.size = sizeof(op);
	op.key = *k;
	op.ts = now;
	op.first_ts = now;
	op.count = 1;
	op.cgroup_id = bpf_get_current_cgroup_id();
	op.cap_effective = cap_effective(cur);
	op.pid = id >> 32;
	op.tid = (__u32)id;
	op.creator_pid = creator ? *creator : 0;
	if (creds) {
		op.cred_uid = creds->uid.val;
		op.cred_euid = creds->euid.val;
		op.cred_cap_effective = cap_effective(creds);
	}
	op.reason = reason;
	bpf_get_current_comm(op.comm, sizeof(op.comm));
	emit(&op, sizeof(op));
}

/* An operation the ring accepted: count it under its key; report the
 * first use of a key (every use with ops_all). A new key includes the
 * submitter's euid and whether the personality's creds differ, so an
 * operation run under someone else's credentials is always reported. */
static __always_inline int on_submit(struct io_kiocb *req)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_boot_ns();
	struct uw_use_key k = {};
	struct uw_use *u, fresh = {};

	if (!ring_events_allowed(id))
		return 0;
	use_key(&k, req, task);
	u = bpf_map_lookup_elem(&uses, &k);
	if (u) {
		__sync_fetch_and_add(&u->count, 1);
		u->last_ts = now;
		if (cfg.ops_all)
			send_op(&k, req, task, now, UW_OP_EACH);
		return 0;
	}
	fresh.count = 1;
	fresh.first_ts = now;
	fresh.last_ts = now;
	fresh.pid = id >> 32;
	fresh.tid = (__u32)id;
	fresh.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
	if (bpf_map_update_elem(&uses, &k, &fresh, BPF_NOEXIST)) {
		/* another CPU added it first, or the map is full */
		u = bpf_map_lookup_elem(&uses, &k);
		if (u)
			__sync_fetch_and_add(&u->count, 1);
		else
			bump(UW_CNT_OPS_UNTRACKED);
		if (!cfg.ops_all)
			return 0;
	}
	send_op(&k, req, task, now, cfg.ops_all ? UW_OP_EACH : UW_OP_FIRST);
	return 0;
}

#endif
