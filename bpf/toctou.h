/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The TOCTOU check: at exit, re-read the user memory the kernel copied
 * and compare it with the copy taken at enter.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_TOCTOU_H
#define URINGWATCH_TOCTOU_H

#define CHUNK 256
_Static_assert(sizeof(((struct uw_slot *)0)->reread) == CHUNK, "a chunk fills the slot's reread");

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
		if (rem > CHUNK || bpf_probe_read_user(s->reread, rem, (void *)(x->r->addr + pos))) {
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
	diff = (s->reread[w / 8] ^ *(__u64 *)&s->data[at]) & mask;
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

#endif
