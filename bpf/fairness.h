/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Fairness: no process can flood the ring and hide others' calls, or its
 * own distinct ones. Per process (tgid):
 * - a call identical to the last one it sent (same keyed signature over
 *   opcode, fd, ret, nr_args, arg, flags, regions and their bytes) is not
 *   sent but counted into a run; the run is summarised by one uw_repeat
 *   record before the process's next call that is sent;
 * - distinct calls spend a token-bucket budget, refilled over time; a call
 *   over budget is dropped and counted for its process, except the first
 *   call of each opcode, which is always sent (headroom);
 * - every drop is counted for its process by cause.
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

/* The process's state, made on its first call; NULL when the map is full
 * (counted: the call goes out without fairness). */
static __always_inline struct uw_proc *fair__proc(__u32 tgid, __u64 now)
{
	struct uw_proc *p = bpf_map_lookup_elem(&procs, &tgid), fresh = {};

	if (p || !cfg.fair)
		return p;
	fresh.credit = cfg.fair_burst_ns;
	fresh.credit_ts = now;
	bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
	/* NOEXIST: another thread may have made it meanwhile; keep theirs */
	bpf_map_update_elem(&procs, &tgid, &fresh, BPF_NOEXIST);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		bump(UW_CNT_PROCS_FULL);
	return p;
}

/* Counts a call lost at enter (no slot) for its process too. */
static __always_inline void fair__lost_at_enter(__u32 tgid)
{
	struct uw_proc *p;

	bump(UW_CNT_INFLIGHT_FULL);
	if (!cfg.fair)
		return;
	p = fair__proc(tgid, bpf_ktime_get_boot_ns());
	if (p)
		__sync_fetch_and_add(&p->drops[UW_DROP_INFLIGHT_FULL], 1);
}

/* One step of a keyed multiply-rotate hash; fair__sig finishes it with
 * murmur3's finaliser. The key is random per tracer run, so a caller can't
 * aim two different calls at one signature offline. Not a MAC: README,
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

/* Spends one record of the budget; false when the process has none left.
 * The first call of each opcode is free and always passes. */
static __always_inline bool fair__budget(struct uw_proc *p, __u32 opcode, __u64 now)
{
	__u32 op = opcode & ~IORING_REGISTER_USE_REGISTERED_RING;
	__u64 credit = p->credit, last = p->credit_ts;

	if (!cfg.fair_cost_ns || !(p->opcodes & (1ULL << (op < 63 ? op : 63))))
		return true;
	/* another thread may have refilled at a later time already */
	if (now > last) {
		credit += now - last;
		p->credit_ts = now;
	}
	if (credit > cfg.fair_burst_ns)
		credit = cfg.fair_burst_ns;
	if (credit < cfg.fair_cost_ns) {
		p->credit = credit;
		return false;
	}
	p->credit = credit - cfg.fair_cost_ns;
	return true;
}

/* Sends the summary of the process's pending run, if any. When the ring
 * is full the run stays pending: the next summary carries its count. */
static __always_inline void fair__end_run(struct uw_proc *p)
{
	struct uw_repeat r = {
		.hdr = { .kind = UW_KIND_REPEAT, .abi = UW_ABI_VERSION, .size = sizeof(r) },
	};

	if (!p->run_first)
		return;
	r.first_ts = p->run_first;
	r.last_ts = p->run_last;
	r.coalesced = p->coalesced;
	r.ret = p->ret;
	r.pid = bpf_get_current_pid_tgid() >> 32;
	r.tid = p->tid;
	r.fd = p->fd;
	r.opcode = p->opcode;
	__builtin_memcpy(r.comm, p->comm, sizeof(r.comm));
	if (bpf_ringbuf_output(&events, &r, sizeof(r), wakeup_flag(sizeof(r))))
		return;
	p->run_first = 0;
	bump(UW_CNT_REPEATS);
}

/* Whether the finished call in s goes to the ring: false when it is
 * coalesced into a run or over budget (both counted here). *sig gets its
 * signature, for fair__sent. */
static __always_inline bool fair__admit(struct uw_proc *p, struct uw_slot *s, __u64 *sig,
					const bool loop)
{
	__u64 ts = s->call.ts_enter;

	*sig = fair__sig(s, loop);
	if (*sig != NO_SIG && *sig == p->sig) {
		__sync_fetch_and_add(&p->coalesced, 1);
		if (!p->run_first)
			p->run_first = ts;
		p->run_last = ts;
		bump(UW_CNT_COALESCED);
		return false;
	}
	if (!fair__budget(p, s->call.opcode, s->call.ts_exit)) {
		__sync_fetch_and_add(&p->drops[UW_DROP_BUDGET], 1);
		bump(UW_CNT_BUDGET);
		return false;
	}
	fair__end_run(p);
	return true;
}

/* After the ring took (sent) or refused the call admitted. */
static __always_inline void fair__sent(struct uw_proc *p, struct uw_slot *s, __u64 sig,
				       bool sent)
{
	__u32 op = s->call.opcode & ~IORING_REGISTER_USE_REGISTERED_RING;

	if (!sent) {
		__sync_fetch_and_add(&p->drops[UW_DROP_RING_FULL], 1);
		return;
	}
	p->sig = sig;
	p->ret = s->call.ret;
	p->tid = s->call.tid;
	p->fd = s->call.fd;
	p->opcode = s->call.opcode;
	p->opcodes |= 1ULL << (op < 63 ? op : 63);
	__builtin_memcpy(p->comm, s->call.comm, sizeof(p->comm));
}

#endif
