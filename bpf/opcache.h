/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The operations' fast path: a CPU remembers the last operation it counted
 * in `uses` by a fingerprint of everything its key, its ring's id and the
 * filters' verdict depend on. An operation with the same fingerprint has
 * the same key: it only adds to the CPU's pending count, with no lookup of
 * its ring, no filter and no hash. Any other operation first adds the
 * pending count to `uses` (a flush), then takes on_submit's full path.
 * User space adds the pending counts to the map's (rings.py, UseCounts).
 * Part of uringwatch.bpf.c's one translation unit; included there only,
 * after rings.h and targets.h.
 */
#ifndef URINGWATCH_OPCACHE_H
#define URINGWATCH_OPCACHE_H

/* What an operation's key, its ring's id and the filters' verdict are
 * made of, as raw values and addresses. Credentials are compared by
 * content where a key reads them (a freed cred's address can come back
 * with other ids), by address where it names them (cred_id). Whatever
 * use_key() or op_allowed() come to read must be here too (opc__print),
 * or a hit would count an operation under another's key; what
 * op__target() reads (bpf/opfile.h: the file an fd or a fixed slot names,
 * read anew for every operation, a URING_CMD's command, a send's
 * destination) is here as the target it makes. */
struct opc_print {
	__u64 epoch;          /* opc_epochs: rings made and freed, filters changed */
	__u64 ctx;            /* the ring */
	__u64 task;
	__u64 pid_tgid;
	__u64 creds;          /* the personality's, 0: none */
	__u64 cred;           /* the task's */
	__u64 own;            /* the owner's (owner_of) */
	__u64 ids;            /* the owner's uid and euid */
	__u64 op;             /* opcode, the request's fixed/select bits, creds differ */
	__u64 slots;          /* file slot and buffer index as the request has them */
	__u64 cgroup;         /* what a cgroup filter reads */
	__u64 uid;            /* what a uid filter reads */
	__u64 file_id;        /* op__target's: the fd's or slot's file's keyed id */
	__u64 target;         /* op__target's: cmd_op, and its flags << 32 */
	__u64 file_in_id;     /* op__target's: SPLICE/TEE's input's keyed id, or a
			       * send's destination's (every byte of its sockaddr) */
	char comm[UW_COMM_LEN]; /* what a comm filter reads */
};

struct opc_slot {
	struct uw_use_pending p;   /* read by user space: keep first */
	struct opc_print last;     /* the fingerprint of p.key */
	struct opc_print cur;      /* this operation's */
	__u64 cur_ok;              /* cur was made, and may be kept */
	__u64 tick;                /* jiffies at p.use.last_ts */
	struct uw_op_key target;   /* this operation's target part, by op__target */
	__u64 file;                /* the file it was made of (0: none) */
	__u64 target_ok;           /* target is this operation's: on_submit takes it */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct opc_slot);
} opc_slots SEC(".maps");

/* What a fingerprint cannot see change: [0] bumped here when a ring is
 * made or freed (a new ring at a freed ring's address gets a new id), [1]
 * by user space when it takes a pid or cgroup out of a filter or an idle
 * key out of `uses`. Every CPU's fingerprints then miss once. */
struct opc_epochs_val {
	__u64 kernel;
	__u64 user;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct opc_epochs_val);
} opc_epochs SEC(".maps");

static __always_inline void opc__bump(void)
{
	__u32 zero = 0;
	struct opc_epochs_val *e = bpf_map_lookup_elem(&opc_epochs, &zero);

	if (e)
		__sync_fetch_and_add(&e->kernel, 1);
}

/* Stores a kernel pointer in the fingerprint, where it reads back as a
 * number (see addr_of). */
#define OPC_PUT(field, ptr) (*(const void **)&(field) = (ptr))

/* This operation's target part (op__target) into the slot, read once
 * for both the fingerprint and, on a miss, the key. */
static __always_inline void opc__target_of(struct opc_slot *c, struct io_kiocb *req)
{
	struct uw_op_key *t = &c->target;

	t->use.opcode = req->opcode;
	t->use.flags = req->flags & REQ_F_FIXED_FILE ? UW_OP_FIXED_FILE : 0;
	t->file_id = 0;
	t->cmd_op = 0;
	t->target = 0;
	t->file_in_id = 0;
	c->file = op__target(t, req);
	c->target_ok = 1;
}

/* This operation's fingerprint into c->cur; false if it may not be kept:
 * an SQPOLL thread's with a comm filter, which judges its leader's comm,
 * or a fixed-buffer op of length 0, an action (bpf/targets.h) each time. */
static __always_inline bool opc__print(struct opc_slot *c, struct io_kiocb *req,
				       struct task_struct *task, __u64 pid_tgid)
{
	const struct cred *creds = req_creds(req), *own = owner_of(task)->cred;
	const struct cred *run = creds ? creds : task->cred;
	struct opc_print *f = &c->cur;
	struct opc_epochs_val *e;
	__u32 zero = 0;
	__u64 differ = 0;

	opc__target_of(c, req);
	if (cfg.targ_comm[0] && (task->flags & PF_IO_WORKER))
		return false;
	if (req->opcode < 64 && (ACT_FIXED_OPS >> req->opcode & 1) && !act_rw_len(addr_of(req)))
		return false;
	e = bpf_map_lookup_elem(&opc_epochs, &zero);
	if (!e)
		return false;
	f->epoch = e->kernel + (e->user << 40);
	OPC_PUT(f->ctx, req->ctx);
	OPC_PUT(f->task, task);
	f->pid_tgid = pid_tgid;
	OPC_PUT(f->creds, creds);
	OPC_PUT(f->cred, task->cred);
	OPC_PUT(f->own, own);
	f->ids = own->uid.val | (__u64)own->euid.val << 32;
	/* addresses as numbers: the same creds need no comparison */
	if (*(volatile __u64 *)&f->own != (creds ? *(volatile __u64 *)&f->creds :
					   *(volatile __u64 *)&f->cred))
		differ = !same_creds(run, own);
	f->op = req->opcode | (req->flags & (REQ_F_FIXED_FILE | REQ_F_BUFFER_SELECT)) << 8 |
		differ << 16;
	f->slots = (__u32)req->cqe.fd | (__u64)req->buf_index << 32;
	f->uid = cfg.targ_uid != (__u32)-1 ? task->cred->uid.val : 0;
	f->file_id = c->target.file_id;
	f->target = c->target.cmd_op | (__u64)c->target.target << 32;
	f->file_in_id = c->target.file_in_id;
	f->cgroup = cfg.targ_cgroups ? bpf_get_current_cgroup_id() : 0;
	if (cfg.targ_comm[0])
		bpf_get_current_comm(f->comm, sizeof(f->comm));
	return true;
}

static __always_inline bool opc__same(const struct opc_print *a, const struct opc_print *b)
{
	const volatile __u64 *x = (const void *)a, *y = (const void *)b;
	__u64 d = 0;
	int i;

#pragma unroll
	for (i = 0; i < sizeof(*a) / 8; i++)
		d |= x[i] ^ y[i];
	return !d;
}

/* The CPU's pending uses into `uses`; where user space took the key out
 * meanwhile (idle an interval), made again with them, unreported: its
 * first use was. Zeroed before the add, so that user space, which reads
 * `uses` before the pending counts, may see them in neither place for a
 * moment but never in both. */
static __always_inline void opc__flush(struct opc_slot *c)
{
	__u64 n = c->p.use.count;
	struct uw_use *u;

	if (!n)
		return;
	c->p.use.count = 0;
	u = bpf_map_lookup_elem(&uses, &c->p.key);
	if (u) {
		__sync_fetch_and_add(&u->count, n);
		if (u->last_ts < c->p.use.last_ts)
			u->last_ts = c->p.use.last_ts;
		return;
	}
	c->p.use.count = n;
	if (bpf_map_update_elem(&uses, &c->p.key, &c->p.use, BPF_NOEXIST)) {
		u = bpf_map_lookup_elem(&uses, &c->p.key);
		if (u)
			__sync_fetch_and_add(&u->count, n);
		else
			bump_by(UW_CNT_OPS_UNTRACKED, n);
	}
	c->p.use.count = 0;
}

/* on_submit's first step: true if the operation is the CPU's last one
 * again, now counted; else the pending uses are flushed and the full path
 * follows. */
static __always_inline bool opc__hit(struct io_kiocb *req, struct task_struct *task,
				     __u64 pid_tgid)
{
	__u32 zero = 0;
	struct opc_slot *c;
	__u64 t;

	c = bpf_map_lookup_elem(&opc_slots, &zero);
	if (!c)
		return false;
	if (cfg.ops_all) {
		c->target_ok = 0;
		return false;
	}
	c->cur_ok = opc__print(c, req, task, pid_tgid);
	if (c->cur_ok && opc__same(&c->cur, &c->last)) {
		c->p.use.count++;
		/* The clock read once a tick: it took half the path. The last
		 * use's time is the first of its tick's on this CPU: less than
		 * a tick before it, never after. */
		t = bpf_jiffies64();
		if (t != c->tick) {
			c->tick = t;
			c->p.use.last_ts = bpf_ktime_get_boot_ns();
		}
		return true;
	}
	opc__flush(c);
	return false;
}

/* on_submit's last step for an operation counted in `uses` (u: its value
 * there): its fingerprint and key become the CPU's last. Not for actions,
 * reported each, nor for denied operations (which do not come here). */
static __always_inline void opc__keep(const struct uw_op_key *k, const struct uw_use *u,
				      __u64 now)
{
	__u32 zero = 0, op = k->use.opcode;
	struct opc_slot *c;

	if (cfg.ops_all || (op < 64 && (ACT_OPS >> op & 1)))
		return;
	c = bpf_map_lookup_elem(&opc_slots, &zero);
	if (!c || !c->cur_ok)
		return;
	c->p.key = *k;
	c->p.use = *u;
	c->p.use.count = 0;
	c->p.use.last_ts = now;
	c->tick = 0;               /* the next hit reads the clock */
	c->last = c->cur;
	c->cur_ok = 0;
}

/* The target part of the key on_submit builds: the one opc__hit read for
 * this operation's fingerprint, else (no slot, or a denied operation,
 * which doesn't come through opc__hit) read now. */
static __always_inline __u64 opc__target(struct uw_op_key *k, struct io_kiocb *req)
{
	__u32 zero = 0;
	struct opc_slot *c = bpf_map_lookup_elem(&opc_slots, &zero);

	if (!c || !c->target_ok)
		return op__target(k, req);
	c->target_ok = 0;
	k->file_id = c->target.file_id;
	k->cmd_op = c->target.cmd_op;
	k->target = c->target.target;
	k->file_in_id = c->target.file_in_id;
	return c->file;
}

#endif
