/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Fairness: no process, nor a swarm of them, can flood the ring and hide
 * others' calls, or its own distinct ones. Per process (tgid):
 * - a call identical to the last one it sent (same keyed signature over
 *   opcode, fd, ret, nr_args, arg, flags, regions and their bytes) is not
 *   sent but counted into a run; the run is summarised by one uw_repeat
 *   record before the process's next call that is sent;
 * - distinct calls spend two token buckets: the process's and its
 *   aggregate's (uid and cgroup), which every process under it spends, so
 *   forking does not multiply budgets; the first call of each opcode of a
 *   process passes free (headroom), and a light sender (a process whose
 *   own small allowance, banked from its start, is not spent) passes when
 *   the budgets say no;
 * - past half the ring (the budgets' line) budgets let nothing pass, past
 *   three quarters (the reserve line) first calls neither: budgets of many
 *   aggregates (a root swarm across uids), or first calls of a swarm's
 *   processes, can't fill the room light senders need;
 * - every drop is counted for its process, or its aggregate, by cause;
 * - when a process ends, its pending run is summarised, its counts added
 *   to its aggregate's and its state freed, so the map can't be filled by
 *   processes that come and go; a process that finds the map full anyway
 *   is held to its aggregate's budget alone, with no headroom.
 * Every call ends exactly once: sent, coalesced, or dropped and counted.
 * Threads of a process race on its state without locks (tracing programs
 * can't take bpf_spin_lock): counts are atomic adds, so they stay exact;
 * the rest (signature, run bounds, credit) is a best effort.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_FAIRNESS_H
#define URINGWATCH_FAIRNESS_H

#define SIG_CHUNK 64            /* data bytes hashed per bpf_loop step */
#define NO_SIG 0                /* never equal to a stored signature */
_Static_assert(UW_ARR_A_MAX < 1 << 15 && UW_R_EXIT_FAULT < 1 << 5 && UW_QUERY_ENTRY < 1 << 11,
	       "a region's len, flags and elem must fit their bits of the signature word");

/* Takes one record's cost from a bucket refilled at 1 ns of credit per ns
 * up to burst; false when it holds less. Another thread may have refilled
 * it at a later time already: time never runs back. */
static __always_inline bool bucket_take(__u64 *credit, __u64 *ts, __u64 now, __u64 cost,
					__u64 burst)
{
	__u64 c = *credit, last = *ts;

	if (now > last) {
		c += now - last;
		*ts = now;
	}
	if (c > burst)
		c = burst;
	if (c < cost) {
		*credit = c;
		return false;
	}
	*credit = c - cost;
	return true;
}

/* The current process's age in ns (from its leader's start), 0 if unread. */
static __always_inline __u64 fair__age(__u64 now)
{
	__u64 start, leader;

	if (cfg.use_task_btf) {
		start = bpf_get_current_task_btf()->group_leader->start_boottime;
	} else {
		leader = kread(bpf_get_current_task() + KOFF(struct task_struct, group_leader),
			       false);
		start = kread(leader + KOFF(struct task_struct, start_boottime), false);
	}
	return start && now > start ? now - start : 0;
}

/* Whether the current task is the last of its process to end (read in
 * sched_process_exit, after do_exit counted it out of signal->live); an
 * unreadable count says yes, which frees the state early: its counts are
 * folded into the aggregate all the same. */
static __always_inline bool fair__group_dead(void)
{
	__u64 sig;

	if (cfg.use_task_btf)
		return !bpf_get_current_task_btf()->signal->live.counter;
	sig = kread(bpf_get_current_task() + KOFF(struct task_struct, signal), false);
	return !(__u32)kread(sig + KOFF(struct signal_struct, live), false);
}

/* The aggregate's state, made on its first call; the overflow aggregate's
 * when the map is full (counted). NULL only if user space made none. */
static __always_inline struct uw_agg *fair__agg(struct uw_agg_key *k, __u64 now)
{
	struct uw_agg_key over = { .uid = UW_AGG_OVERFLOW_UID };
	struct uw_agg *a = bpf_map_lookup_elem(&aggs, k), *fresh;
	__u32 zero = 0;

	if (a)
		return a;
	fresh = bpf_map_lookup_elem(&fresh_state, &zero);
	if (fresh) {
		__builtin_memset(fresh, 0, sizeof(*fresh));
		fresh->budget.credit = cfg.fair_agg_burst_ns;
		fresh->budget.ts = now;
		bpf_map_update_elem(&aggs, k, fresh, BPF_NOEXIST);
	}
	a = bpf_map_lookup_elem(&aggs, k);
	if (a)
		return a;
	bump(UW_CNT_AGGS_FULL);
	return bpf_map_lookup_elem(&aggs, &over);
}

/* The process's state, made on its first call with a full budget and a
 * light allowance banked since it started; NULL when the map is full
 * (counted: its calls are held to the aggregate's budget alone). */
static __always_inline struct uw_proc *fair__proc(__u32 tgid, __u64 now, __u32 uid,
						  __u64 cgroup_id)
{
	struct uw_proc *p, *fresh;
	__u32 zero = 0;

	if (!cfg.fair)          /* none made: a lookup would always miss (~10 ns) */
		return 0;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (p)
		return p;
	fresh = bpf_map_lookup_elem(&fresh_state, &zero);
	if (!fresh)
		return 0;
	__builtin_memset(fresh, 0, sizeof(*fresh));
	fresh->credit = cfg.fair_burst_ns;
	fresh->credit_ts = now;
	fresh->light.credit = fair__age(now);
	fresh->light.ts = now;
	fresh->agg.uid = uid;
	fresh->agg.cgroup_id = cgroup_id;
	bpf_get_current_comm(fresh->comm, sizeof(fresh->comm));
	/* NOEXIST: another thread may have made it meanwhile; keep theirs */
	bpf_map_update_elem(&procs, &tgid, fresh, BPF_NOEXIST);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		bump(UW_CNT_PROCS_FULL);
	return p;
}

/* Counts a drop for its process, or without state for its aggregate. */
static __always_inline void fair__drop(struct uw_proc *p, __u32 uid, __u64 cgroup_id,
				       __u32 cause)
{
	struct uw_agg_key k = { .cgroup_id = cgroup_id, .uid = uid };
	struct uw_agg *a;

	if (cause >= UW_DROP_MAX)
		return;
	if (p) {
		__sync_fetch_and_add(&p->drops[cause], 1);
		return;
	}
	a = fair__agg(&k, bpf_ktime_get_boot_ns());
	if (a)
		__sync_fetch_and_add(&a->drops[cause], 1);
}

/* Counts a call lost at enter (no slot) for its process too. */
static __always_inline void fair__lost_at_enter(__u32 tgid)
{
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u64 cg = bpf_get_current_cgroup_id();

	bump(UW_CNT_INFLIGHT_FULL);
	if (!cfg.fair)
		return;
	fair__drop(fair__proc(tgid, bpf_ktime_get_boot_ns(), uid, cg), uid, cg,
		   UW_DROP_INFLIGHT_FULL);
}

/* One step of a keyed multiply-rotate hash; fair__sig finishes it with
 * murmur3's finaliser. The key is random per tracer run, so a caller can't
 * aim two different calls at one signature offline. Not a MAC: docs/ARCHITECTURE.md,
 * Fairness. Kept to three instructions: it runs for every word hashed. */
static __always_inline __u64 sig_mix(__u64 h, __u64 w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ULL;
	return h << 31 | h >> 33;
}

static __always_inline __u64 sig_final(__u64 h)
{
	h ^= cfg.fair_key;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ h >> 33;
}

struct sig_ctx {
	struct uw_slot *s;
	__u64 h, base, len;   /* bytes [base, base + len) of data */
};

/* Mixes data bytes [k * SIG_CHUNK, +SIG_CHUNK) that lie below len;
 * 1 when it reached len. */
static __always_inline long sig_chunk(__u64 k, struct sig_ctx *x)
{
	__u64 at, rem, w;
	int j;

#pragma unroll
	for (j = 0; j < SIG_CHUNK / 8; j++) {
		at = k * SIG_CHUNK + j * 8;
		if (at >= x->len)
			return 1;
		rem = x->len - at;
		at += x->base;
		keep(at);
		if (at > UW_DATA_MAX - 8)
			return 1;
		keep(at);
		w = *(__u64 *)&x->s->data[at];
		if (rem < 8)
			w &= (1ULL << (rem * 8)) - 1;
		x->h = sig_mix(x->h, w);
	}
	return 0;
}

/* bpf_loop's callback: referenced only by the programs that have it. */
static long sig_step(__u64 k, struct sig_ctx *x)
{
	return sig_chunk(k, x);
}

/* Identities are mixed in by what tells them apart, not byte by byte
 * (their paths alone are 176 bytes each: hashing them all cost +65% per
 * REGISTER_FILES of 8 fds): a file's inode and device (a socket's inode
 * is its own); a buffer's mapping and its file's. Their fds
 * and addresses are in the arguments, hashed whole. */
static __always_inline void sig_file(struct sig_ctx *x, __u64 i)
{
	__u64 at = x->base + i * sizeof(struct uw_file);

	x->h = sig_mix(x->h, data_u64(x->s, at + 16));        /* ino */
	x->h = sig_mix(x->h, data_u64(x->s, at + 24));        /* dev, magic */
}

static long sig_file_step(__u64 i, struct sig_ctx *x)
{
	sig_file(x, i);
	return 0;
}

static long sig_mem_step(__u64 i, struct sig_ctx *x)
{
	__u64 at = x->base + i * sizeof(struct uw_mem);

	x->h = sig_mix(x->h, data_u64(x->s, at + 16));        /* vm_start */
	x->h = sig_mix(x->h, data_u64(x->s, at + 32));        /* vm_pgoff */
	x->h = sig_mix(x->h, data_u64(x->s, at + 48));        /* flags */
	x->h = sig_mix(x->h, data_u64(x->s, at + 56 + 16));   /* its file: ino */
	x->h = sig_mix(x->h, data_u64(x->s, at + 56 + 24));   /* its file: dev */
	return 0;
}

/* Mixes in the identities at data[base..]; false when that can't be done
 * without bpf_loop (more than UW_SIG_FILES_UNROLLED files, or any buffer). */
static __always_inline bool sig_identities(struct sig_ctx *x, struct uw_call *c, __u64 base,
					   const bool loop)
{
	__u64 n = c->ident.nfiles, m = c->ident.nmem;
	int i;

	x->base = base;
	if (!loop) {
		if (n > UW_SIG_FILES_UNROLLED || m)
			return false;
#pragma unroll
		for (i = 0; i < UW_SIG_FILES_UNROLLED; i++)
			if (i < n)
				sig_file(x, i);
		return true;
	}
	keep(n);
	if (bpf_loop(n, sig_file_step, x, 0) < 0)
		return false;
	x->base = base + n * sizeof(struct uw_file);
	keep(m);
	return bpf_loop(m, sig_mem_step, x, 0) >= 0;
}

/* Mixes in data bytes [base, base + len): unrolled up to UW_SIG_UNROLLED,
 * else through bpf_loop; false when that can't be done (no bpf_loop). */
static __always_inline bool sig_bytes(struct sig_ctx *x, __u64 base, __u64 len,
				      const bool loop)
{
	__u64 steps;
	int i;

	x->base = base;
	x->len = len;
	if (len <= UW_SIG_UNROLLED) {
#pragma unroll
		for (i = 0; i < UW_SIG_UNROLLED / SIG_CHUNK; i++)
			if (sig_chunk(i, x))
				break;
		return true;
	}
	if (!loop)
		return false;
	/* kept whole: clang computed only the low 32 bits of the count (the
	 * helper's argument is a u32), and the verifier's inlined bpf_loop
	 * then saw a 64-bit count over its limit and returned -E2BIG without
	 * one step, so no data byte was hashed */
	steps = (len + SIG_CHUNK - 1) / SIG_CHUNK;
	keep(steps);
	return bpf_loop(steps, sig_step, x, 0) >= 0;
}

/* The call's signature, NO_SIG when it can't be hashed (then it is never
 * coalesced): the arguments and every byte captured of what they point
 * at, the identities by what tells them apart (sig_identities). Captures
 * over UW_SIG_UNROLLED bytes need bpf_loop, which the _noloop twins lack. */
static __always_inline __u64 fair__sig(struct uw_slot *s, const bool loop)
{
	struct uw_call *c = &s->call;
	struct sig_ctx x = { .s = s, .h = cfg.fair_key };
	__u64 args = c->region[0].len + c->region[1].len + c->region[2].len;
	__u64 idents = ident_bytes(c);
	int i;

	x.h = sig_mix(x.h, (__u64)c->opcode << 32 | (__u32)c->fd);
	x.h = sig_mix(x.h, c->ret);
	x.h = sig_mix(x.h, (__u64)c->nr_args << 32 | c->flags);
	x.h = sig_mix(x.h, c->arg);
	x.h = sig_mix(x.h, (__u64)c->ident.nfiles << 32 | c->ident.nmem << 16 | c->ident.flags);
#pragma unroll
	for (i = 0; i < UW_NREGION; i++) {
		struct uw_region *r = &c->region[i];

		if (!r->addr && !r->count && !r->len)
			continue;
		/* len < 2^15, flags < 2^5, elem < 2^11: one word, no overlap */
		x.h = sig_mix(x.h, r->addr ^ i);
		x.h = sig_mix(x.h, (__u64)r->count << 32 | r->len << 16 | r->flags << 11 |
				   r->elem);
	}
	if (!sig_bytes(&x, 0, args, loop))
		return NO_SIG;
	if (!sig_identities(&x, c, args, loop))
		return NO_SIG;
	if (!sig_bytes(&x, args + idents, c->region[3].len, loop))
		return NO_SIG;
	x.h = sig_final(x.h);
	return x.h == NO_SIG ? NO_SIG + 1 : x.h;
}

static __always_inline __u64 op_bit(__u32 opcode)
{
	__u32 op = opcode & ~IORING_REGISTER_USE_REGISTERED_RING;

	return 1ULL << (op < 63 ? op : 63);
}

/* Spends one record of the process's budget and of its aggregate's (the
 * overflow's, without state); false, spending neither, when either has
 * none left. */
static __always_inline bool fair__budget(struct uw_proc *p, struct uw_agg_key *k, __u64 now)
{
	struct uw_agg *a;

	if (p && !bucket_take(&p->credit, &p->credit_ts, now, cfg.fair_cost_ns,
			      cfg.fair_burst_ns))
		return false;
	a = fair__agg(k, now);
	if (!a || bucket_take(&a->budget.credit, &a->budget.ts, now, cfg.fair_agg_cost_ns,
			      cfg.fair_agg_burst_ns))
		return true;
	if (p)
		p->credit += cfg.fair_cost_ns;  /* given back: not sent */
	return false;
}

#define FAIR_PASS UW_DROP_MAX

/* Whether a record may be sent: FAIR_PASS, else the drop cause. By the
 * ring's fill: below the budgets' line, a first (see fair__pass,
 * fair__emit) or a record within both budgets; below the reserve line, a
 * first only; past it, none. At any fill, a light sender's (its own
 * allowance not spent). k: the aggregate whose budget it spends. */
static __always_inline __u32 fair__gate(struct uw_proc *p, struct uw_agg_key *k, __u64 now,
					bool first)
{
	__u64 fill = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	if (first && fill < cfg.fair_reserve_bytes)
		return FAIR_PASS;
	if (fill < cfg.fair_budget_bytes && fair__budget(p, k, now))
		return FAIR_PASS;
	if (p && bucket_take(&p->light.credit, &p->light.ts, now, cfg.fair_light_cost_ns,
			     cfg.fair_light_burst_ns)) {
		bump(UW_CNT_LIGHT);
		return FAIR_PASS;
	}
	return fill < cfg.fair_budget_bytes ? UW_DROP_BUDGET : UW_DROP_RESERVE;
}

/* Whether a distinct call may be sent (fair__gate); its first is the first
 * call of its opcode by a process with state. */
static __always_inline bool fair__pass(struct uw_proc *p, struct uw_slot *s, __u32 *cause)
{
	struct uw_agg_key k = { .cgroup_id = s->call.cgroup_id, .uid = s->call.uid };
	__u32 c;

	if (!cfg.fair_cost_ns)
		return true;
	if (p)
		k = p->agg;
	c = fair__gate(p, &k, s->call.ts_exit, p && !(p->opcodes & op_bit(s->call.opcode)));
	if (c == FAIR_PASS)
		return true;
	*cause = c;
	return false;
}

/* Sends the summary of the process's pending run: a `kind` record, with
 * the process's running total; false when the ring is full (the run then
 * stays pending: the next summary carries its count). */
static __always_inline bool fair__summary(struct uw_proc *p, __u16 kind)
{
	/* made in the ring, not on the stack (see fresh_state) */
	struct uw_repeat *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r)
		return false;
	__builtin_memset(r, 0, sizeof(*r));
	r->hdr.kind = kind;
	r->hdr.abi = UW_ABI_VERSION;
	r->hdr.size = sizeof(*r);
	r->first_ts = p->run_first ? p->run_first : p->run_last;
	r->last_ts = p->run_last;
	r->coalesced = p->coalesced;
	r->ret = p->ret;
	r->pid = bpf_get_current_pid_tgid() >> 32;
	r->tid = p->tid;
	r->fd = p->fd;
	r->opcode = p->opcode;
	__builtin_memcpy(r->comm, p->comm, sizeof(r->comm));
	bpf_ringbuf_submit(r, wakeup_flag(sizeof(*r)));
	p->run_first = 0;
	bump(UW_CNT_REPEATS);
	return true;
}

static __always_inline void fair__end_run(struct uw_proc *p)
{
	if (p->run_first)
		fair__summary(p, UW_KIND_REPEAT);
}

/* Whether the finished call in s goes to the ring: false when it is
 * coalesced into a run or not let pass (both counted here). p is NULL for
 * a process without state. *sig gets its signature, for fair__sent. */
static __always_inline bool fair__admit(struct uw_proc *p, struct uw_slot *s, __u64 *sig,
					const bool loop)
{
	__u64 ts = s->call.ts_enter;
	__u32 cause = UW_DROP_BUDGET;

	if (p) {
		*sig = fair__sig(s, loop);
		if (*sig != NO_SIG && *sig == p->sig) {
			__sync_fetch_and_add(&p->coalesced, 1);
			if (!p->run_first)
				p->run_first = ts;
			p->run_last = ts;
			bump(UW_CNT_COALESCED);
			return false;
		}
	}
	if (!fair__pass(p, s, &cause)) {
		fair__drop(p, s->call.uid, s->call.cgroup_id, cause);
		bump(cause == UW_DROP_RESERVE ? UW_CNT_RESERVE : UW_CNT_BUDGET);
		return false;
	}
	if (p)
		fair__end_run(p);
	return true;
}

/* After the ring took (sent) or refused the call admitted. */
static __always_inline void fair__sent(struct uw_proc *p, struct uw_slot *s, __u64 sig,
				       bool sent)
{
	if (!sent) {
		fair__drop(p, s->call.uid, s->call.cgroup_id, UW_DROP_RING_FULL);
		return;
	}
	if (!p)
		return;
	p->sig = sig;
	p->ret = s->call.ret;
	p->tid = s->call.tid;
	p->fd = s->call.fd;
	p->opcode = s->call.opcode;
	p->opcodes |= op_bit(s->call.opcode);
	__builtin_memcpy(p->comm, s->call.comm, sizeof(p->comm));
}

/* The process tgid ended (its last thread is in do_exit): its pending run
 * summarised by a REPEAT_END record, which tells user space its running
 * total restarts, its counts added to its aggregate's, its state freed.
 * While the ring is full the state stays, so nothing is lost: a process
 * that reuses the pid carries its totals on. */
static __always_inline void fair__ended(__u32 tgid)
{
	struct uw_proc *p = bpf_map_lookup_elem(&procs, &tgid);
	struct uw_agg *a;
	int i;

	if (!p || !fair__group_dead())
		return;
	if (p->coalesced && !fair__summary(p, UW_KIND_REPEAT_END))
		return;
	a = fair__agg(&p->agg, bpf_ktime_get_boot_ns());
	if (!a)
		return;
	__sync_fetch_and_add(&a->coalesced, p->coalesced);
#pragma unroll
	for (i = 0; i < UW_DROP_MAX; i++)
		__sync_fetch_and_add(&a->drops[i], p->drops[i]);
#pragma unroll
	for (i = 0; i < UW_REC_MAX; i++)
		__sync_fetch_and_add(&a->rec_drops[i], p->rec_drops[i]);
	__sync_fetch_and_add(&a->ended, 1);
	bpf_map_delete_elem(&procs, &tgid);
	bump(UW_CNT_PROCS_ENDED);
}

/* The aggregate key of a record of a process without state, made in a
 * per-CPU map: the op program's stack has no room for it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_agg_key);
} rec_agg_key SEC(".maps");

/* A ring or op record (enum uw_rec `kind`) of the current process, sent
 * through the gates calls pass (fair__gate), never coalesced: so a flood
 * of rings or operations hides nobody's calls, rings or operations. Its
 * first is the process's first record of the kind, or one the caller
 * says must be (an op under creds that differ). What is not sent, by the
 * gates or a full ring, is counted in rec_drops of its process, or of its
 * aggregate for a process without state. True if sent. */
static __always_inline bool fair__emit(void *rec, __u64 size, __u32 kind, bool first)
{
	__u64 now = bpf_ktime_get_boot_ns(), cg = bpf_get_current_cgroup_id();
	__u32 uid = (__u32)bpf_get_current_uid_gid(), zero = 0;
	__u32 bit = 1U << (kind & 31);
	struct uw_agg_key *k;
	struct uw_proc *p;
	struct uw_agg *a;

	if (!cfg.fair || kind >= UW_REC_MAX)
		return emit(rec, size);
	p = fair__proc(bpf_get_current_pid_tgid() >> 32, now, uid, cg);
	if (p) {
		k = &p->agg;
		first = first || !(p->firsts & bit);
	} else {
		k = bpf_map_lookup_elem(&rec_agg_key, &zero);
		if (!k)
			return emit(rec, size);
		k->cgroup_id = cg;
		k->uid = uid;
		k->pad = 0;
	}
	if (!cfg.fair_cost_ns || fair__gate(p, k, now, first) == FAIR_PASS) {
		if (emit(rec, size)) {
			if (p)
				p->firsts |= bit;   /* a race only sends another first */
			return true;
		}
	} else {
		bump(UW_CNT_RECS_HELD);
	}
	if (p) {
		__sync_fetch_and_add(&p->rec_drops[kind], 1);
		return false;
	}
	a = fair__agg(k, now);
	if (a)
		__sync_fetch_and_add(&a->rec_drops[kind], 1);
	return false;
}

#endif
