/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A call's record as sent (ABI 3, struct uw_call3 in uringwatch.h): the
 * fixed part and only the parts the call has, packed at exit from the
 * slot's state, and the caller's context read into place (capture.h), into
 * the bytes just before its data, so that the record is one run of the
 * slot. Nothing of it is cleared first: every byte sent is written for
 * this call.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_RECORD_H
#define URINGWATCH_RECORD_H

_Static_assert(UW_CALL3_MAX % 8 == 0 && sizeof(struct uw_region) % 8 == 0 &&
	       sizeof(struct uw_task) % 8 == 0 && sizeof(struct uw_ns_ctx) % 8 == 0 &&
	       sizeof(struct uw_cred) % 8 == 0 && sizeof(struct uw_ring_ref) % 8 == 0,
	       "parts are packed 8 bytes at a time");

/* Copies n 8-byte words to head[at..]. Typed loads and stores: through
 * the byte array clang would copy byte by byte. */
#define COPY_WORDS(s, at, src, n)					\
	do {								\
		__u64 *d_ = (void *)&(s)->head[at];			\
		const __u64 *s_ = (const void *)(src);			\
		int w_;							\
		_Pragma("unroll")					\
		for (w_ = 0; w_ < (n); w_++)				\
			d_[w_] = s_[w_];				\
	} while (0)

/* Whether region r is sent: any field set (an unused one is all zero). */
static __always_inline bool region_used(const struct uw_region *r)
{
	return r->addr | r->count | r->len | r->elem | r->flags;
}

/* Packs the record, last part first, so that it ends at data[0]; returns
 * its offset in head[]. Each offset is bounded by the parts after it,
 * which the verifier follows. */
static __always_inline __u32 pack_call(struct uw_slot *s, __u32 data_len)
{
	struct uw_call *c = &s->call;
	struct uw_call3 *h;
	__u32 end = UW_CALL3_MAX, nch = 0, at = 0, j;
	__u8 parts = 0, regions = 0;
	int i;

	if (s->ring_ctx) {
		end -= sizeof(struct uw_ring_ref);
		COPY_WORDS(s, end, &c->ring, sizeof(c->ring) / 8);
		parts |= UW_P_RING;
	}
	if (c->ident.flags & UW_I_CRED) {
		end -= sizeof(struct uw_cred);
		COPY_WORDS(s, end, &c->ident.cred, sizeof(c->ident.cred) / 8);
		parts |= UW_P_CRED;
	}
	if (cfg.use_task_btf) {         /* the caller's context, read into place */
		struct task_struct *task = bpf_get_current_task_btf();

		end -= sizeof(struct uw_ns_ctx);
		if (fill_ns_ctx((void *)&s->head[end], task))
			parts |= UW_P_NS;
		else
			end += sizeof(struct uw_ns_ctx);
		end -= sizeof(struct uw_task);
		c->flags |= fill_task((void *)&s->head[end], task);
		parts |= UW_P_TASK;
	}
	if (c->nchanged) {      /* rare: an input changed under the kernel */
		nch = c->nchanged < UW_MAX_CHANGED ? c->nchanged : UW_MAX_CHANGED;
		end -= (nch + 1) / 2 * 8;
#pragma unroll
		for (j = 0; j < UW_MAX_CHANGED; j++) {
			at = end + j * 4;
			if (j >= nch || at > UW_CALL3_MAX - 4)
				break;
			*(__u32 *)&s->head[at] = c->changed[j];
		}
		if (nch & 1 && at <= UW_CALL3_MAX - 4)
			*(__u32 *)&s->head[at] = 0;     /* the pad after an odd count */
	}
#pragma unroll
	for (i = UW_NREGION - 1; i >= 0; i--) {
		if (!region_used(&c->region[i]))
			continue;
		end -= sizeof(struct uw_region);
		COPY_WORDS(s, end, &c->region[i], sizeof(struct uw_region) / 8);
		regions |= 1 << i;
	}
	end -= sizeof(*h);
	keep(end);
	if (end > UW_CALL3_MAX - sizeof(*h))
		return UW_CALL3_MAX;    /* never: the parts fit by construction */
	h = (void *)&s->head[end];
	h->hdr.kind = UW_KIND_CALL;
	h->hdr.abi = UW_ABI_VERSION;
	h->hdr.size = UW_CALL3_MAX - end + data_len;
	h->ts_enter = c->ts_enter;
	h->ts_exit = c->ts_exit;
	h->arg = c->arg;
	h->ret = c->ret;
	h->cgroup_id = c->cgroup_id;
	h->pid = c->pid;
	h->tid = c->tid;
	h->uid = c->uid;
	h->gid = c->gid;
	h->fd = c->fd;
	h->opcode = c->opcode;
	h->nr_args = c->nr_args;
	h->flags = c->flags;
	h->data_len = data_len;
	h->head_len = UW_CALL3_MAX - end;
	h->regions = regions;
	h->nchanged = nch;
	h->nfiles = c->ident.nfiles;
	h->nmem = c->ident.nmem;
	h->ident_flags = c->ident.flags;
	h->path = c->ident.path;
	h->parts = parts;
	COPY_WORDS(s, end + offsetof(struct uw_call3, comm), c->comm, UW_COMM_LEN / 8);
	return end;
}

/* pack_call for slot idx, as a global function: the verifier checks it
 * once, on its own, where inlined it walked its every combination of
 * parts again for each state the exit program reached it in (two thirds
 * of the tracer's load time). UW_CALL3_MAX: nothing packed. */
__noinline int uw_pack(__u32 idx, __u32 data_len)
{
	struct uw_slot *s = bpf_map_lookup_elem(&slots, &idx);

	if (!s || data_len > UW_DATA_MAX)
		return UW_CALL3_MAX;
	return pack_call(s, data_len);
}

#endif
