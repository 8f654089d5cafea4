/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Identities checked at exit. A file's identity is read from the caller's
 * fd table at enter, but the kernel looks the fd up later, during the
 * call: another thread can point the number at another file in between
 * (dup2). So at exit each fd entry is compared with
 *  - what the ring holds after the call, where this kernel's layout is
 *    known: the registered-file table at the slots the call set (FILES,
 *    FILES2, FILES_UPDATE, FILES_UPDATE2), the eventfd (EVENTFD,
 *    EVENTFD_ASYNC), the ring itself (the ring's own fd): UW_FL_KERNEL;
 *  - else what the fd names at exit, the same struct file as at enter:
 *    UW_FL_SAME_AT_EXIT (a flip away and back meanwhile is not seen);
 * and marked UW_FL_RACED otherwise, the other identity appended as an
 * UW_FL_AT_EXIT entry when there is room.
 *
 * The ring (io_ring_ctx) is the one the io_uring_register tracepoint saw
 * (slot->ring_ctx). Its table is read at exit, after the kernel dropped
 * the ring's lock: a second thread updating the same slot of the same
 * ring in between is seen as a race, or, if it put back the very same
 * open file, not at all (docs/EVENTS.md, Identities).
 *
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_IDENTITY_CHECK_H
#define URINGWATCH_IDENTITY_CHECK_H

#define K_NONE 1        /* what the ring holds can't be read here */
#define K_OTHER 2       /* the ring holds something else, with no file to name */
#define FFS_BITS 7ULL   /* flag bits below a registered file's pointer */
#define UW_FILE_INDEX_ALLOC 0xffffffffU  /* IORING_FILE_INDEX_ALLOC (uapi macro) */

/* Layouts of other kernels (CO-RE flavours). From 5.15 to 6.12 (and in
 * 5.10 from 5.10.162, which took 5.15's io_uring) registered files were
 * an array of io_fixed_file, counted by nr_user_files; 5.13 and 5.14 had
 * a two-level table under the same names, told apart by a type that came
 * with 5.15 (io_mkdir, IORING_OP_MKDIRAT). 5.10 keeps the eventfd in the
 * ring itself. */
struct io_file_table___v515 {
	struct io_fixed_file___v515 *files;
} __attribute__((preserve_access_index));

struct io_fixed_file___v515 {
	unsigned long file_ptr;
} __attribute__((preserve_access_index));

struct io_ring_ctx___v515 {
	unsigned int nr_user_files;
	struct io_file_table___v515 file_table;
	unsigned int nr_user_bufs;
	struct io_mapped_ubuf **user_bufs;
} __attribute__((preserve_access_index));

/* 6.13 to 6.17 wrapped the registered buffers' io_rsrc_data */
struct io_buf_table___v613 {
	struct io_rsrc_data data;
} __attribute__((preserve_access_index));

struct io_ring_ctx___v613 {
	struct io_buf_table___v613 buf_table;
} __attribute__((preserve_access_index));

/* A tail page points at its head in the word after flags, bit 0 set:
 * compound_head (6.18 and before); 7.2's compound_info is not decoded. */
struct page___ch {
	unsigned long compound_head;
} __attribute__((preserve_access_index));

struct page___ci {
	unsigned long compound_info;
} __attribute__((preserve_access_index));

struct io_ring_ctx___v510 {
	struct eventfd_ctx *cq_ev_fd;
} __attribute__((preserve_access_index));

/* Whether table_file knows this kernel's registered-file table. */
static __always_inline bool table_known(void)
{
	return bpf_core_field_exists(struct io_file_table, data) ||
	       (bpf_core_field_exists(struct io_file_table___v515, files) &&
		bpf_core_type_exists(struct io_mkdir));
}

/* The struct file at `slot` of the ring's registered-file table, or
 * K_NONE (no such slot, an empty one, a layout not known here). */
static __always_inline __u64 table_file(__u64 ctx, __u64 slot, const bool btf)
{
	__u64 t, p = 0;

	if (bpf_core_field_exists(struct io_file_table, data)) {                /* 6.13+ */
		t = ctx + KOFF(struct io_ring_ctx, file_table);
		if (slot >= (__u32)kread(t + KOFF(struct io_file_table, data.nr), btf))
			return K_NONE;
		p = kread(kread(t + KOFF(struct io_file_table, data.nodes), btf) + slot * 8, btf);
		if (p)
			p = kread(p + KOFF(struct io_rsrc_node, file_ptr), btf);
	} else if (bpf_core_field_exists(struct io_file_table___v515, files) &&
		   bpf_core_type_exists(struct io_mkdir)) {                     /* 5.15-6.12 */
		if (slot >= (__u32)kread(ctx + KOFF(struct io_ring_ctx___v515, nr_user_files), btf))
			return K_NONE;
		t = ctx + KOFF(struct io_ring_ctx___v515, file_table);
		p = kread(kread(t + KOFF(struct io_file_table___v515, files), btf) + slot * 8, btf);
	}
	p &= ~FFS_BITS;
	return p ? p : K_NONE;
}

/* The ring's eventfd_ctx, or 0. */
static __always_inline __u64 ring_eventfd(__u64 ctx, const bool btf)
{
	if (bpf_core_field_exists(struct io_ring_ctx, io_ev_fd))
		return kread(kread(ctx + KOFF(struct io_ring_ctx, io_ev_fd), btf) +
			     KOFF(struct io_ev_fd, cq_ev_fd), btf);
	if (bpf_core_field_exists(struct io_ring_ctx___v510, cq_ev_fd))
		return kread(ctx + KOFF(struct io_ring_ctx___v510, cq_ev_fd), btf);
	return 0;
}

/* `e` if the file's private data is `want` (an eventfd's ctx, a ring's),
 * else K_OTHER; K_NONE without `want`. */
static __always_inline __u64 private_is(__u64 e, __u64 want, const bool btf)
{
	if (!want)
		return K_NONE;
	return e && kread(e + KOFF(struct file, private_data), btf) == want ? e : K_OTHER;
}

/* What the ring holds after the call for the fd entry of this role and
 * index, whose file at enter was e. */
static __always_inline __u64 held(struct uw_slot *s, __u16 role, __u16 index, __u64 e,
				  const bool btf)
{
	__u32 op = s->call.opcode & ~IORING_REGISTER_USE_REGISTERED_RING, off;
	__u64 ctx = s->ring_ctx;
	__s64 ret = s->call.ret;

	if (!ctx)
		return K_NONE;
	if (role == UW_ROLE_RING)       /* the ring acted on, whatever the result */
		return private_is(e, ctx, btf);
	if (ret < 0)
		return K_NONE;
	if (role == UW_ROLE_EVENTFD)
		return private_is(e, ring_eventfd(ctx, btf), btf);
	if (role != UW_ROLE_FDS)
		return K_NONE;
	if (op == IORING_REGISTER_FILES || op == IORING_REGISTER_FILES2)
		return table_file(ctx, index, btf);
	if (op != IORING_REGISTER_FILES_UPDATE && op != IORING_REGISTER_FILES_UPDATE2)
		return K_NONE;
	/* updates: ret entries were done, from `offset` (the first field of
	 * both heads); slots the kernel allocated are not known here */
	off = data_s32(s, OFF(io_uring_rsrc_update2, offset));
	if (!head_has(s, 4) || off == UW_FILE_INDEX_ALLOC || index >= ret)
		return K_NONE;
	return table_file(ctx, (__u64)off + index, btf);
}

/* The uw_file of entry n of slot s, whose files start at data[base], or NULL. */
static __always_inline struct uw_file *entry_at(struct uw_slot *s, __u32 base, __u32 n,
						 __u64 *at)
{
	__u64 off = base + (__u64)n * sizeof(struct uw_file);

	keep(off);
	if (n >= UW_FILES_MAX || off > UW_DATA_MAX - sizeof(struct uw_file))
		return 0;
	keep(off);
	*at = off;
	return (void *)&s->data[off];
}

/* Appends the other identity of raced entry f: `file`, with `flags`. */
static __always_inline void add_other(struct uw_slot *s, __u32 idx, __u32 base,
				      struct uw_file *f, __u64 file, __u16 flags, const bool btf)
{
	__u32 n = s->call.ident.nfiles;
	struct uw_file *o;
	__u64 off;

	o = entry_at(s, base, n, &off);
	if (!o)
		return;
	__builtin_memset(o, 0, sizeof(*o));
	o->fd = f->fd;
	o->role = f->role;
	o->index = f->index;
	o->flags = flags;
	s->call.ident.nfiles = n + 1;
	resolve_file(idx, off, file, btf);
}

/* Buffers. A buffer's mapping is looked up at exit (identity.h, add_mem),
 * but the kernel pinned its pages earlier in the call: another thread can
 * unmap the address and map something else there in between. So the page
 * the ring pinned at the buffer's first byte (its registered-buffer
 * table's slot, bvec[0]) is compared with the mapping found: a file page's
 * address_space must be the mapped file's and its index the mapping's
 * offset at addr; an anon page's anon_vma must share the mapping's root
 * (a private file mapping's pinned pages are anon: the pin writes). */
#define UW_MAPPING_ANON 1ULL    /* FOLIO_MAPPING_ANON: `mapping` is an anon_vma */
#define UW_MAPPING_BITS 3ULL    /* both: KSM (or a movable page): not compared */
#define UW_VM_HUGETLB 0x00400000ULL /* hugetlb indexes in huge pages on some kernels */
#define UW_NO_BUF 0xffffffffU

/* The ring's registered buffer (io_mapped_ubuf) at `slot`, or 0 (none, or a
 * layout not known here). */
static __always_inline __u64 table_buf(__u64 ctx, __u64 slot, const bool btf)
{
	__u64 t, p;

	if (bpf_core_field_exists(struct io_ring_ctx, buf_table.nodes)) {          /* 6.18+ */
		t = ctx + KOFF(struct io_ring_ctx, buf_table);
	} else if (bpf_core_field_exists(struct io_ring_ctx___v613, buf_table.data)) {
		t = ctx + KOFF(struct io_ring_ctx___v613, buf_table.data);       /* 6.13-6.17 */
	} else if (bpf_core_field_exists(struct io_ring_ctx___v515, user_bufs) &&
		   bpf_core_type_exists(struct io_mkdir)) {                     /* 5.15-6.12 */
		if (slot >= (__u32)kread(ctx + KOFF(struct io_ring_ctx___v515, nr_user_bufs), btf))
			return 0;
		return kread(kread(ctx + KOFF(struct io_ring_ctx___v515, user_bufs), btf) +
			     slot * 8, btf);
	} else {
		return 0;
	}
	if (slot >= (__u32)kread(t + KOFF(struct io_rsrc_data, nr), btf))
		return 0;
	p = kread(kread(t + KOFF(struct io_rsrc_data, nodes), btf) + slot * 8, btf);
	return p ? kread(p + KOFF(struct io_rsrc_node, buf), btf) : 0;
}

/* The mapping (address_space, or anon_vma | 1) of the page pinned first
 * in buffer imu, and in *pgoff the page's index in it; 0: not told here. */
static __always_inline __u64 pinned_page(__u64 imu, __u64 *pgoff, const bool btf)
{
	__u64 bv = imu + KOFF(struct io_mapped_ubuf, bvec), page, head, w;
	__u32 at;

	if (!bpf_core_type_exists(struct folio) ||
	    !(__u32)kread(imu + KOFF(struct io_mapped_ubuf, nr_bvecs), btf))
		return 0;
	page = kread(bv + KOFF(struct bio_vec, bv_page), btf);
	if (!page)
		return 0;
	head = page;
	if (bpf_core_field_exists(struct page___ch, compound_head)) {
		w = kread(page + KOFF(struct page___ch, compound_head), btf);
		if (w & 1)
			head = w - 1;
	} else if (!bpf_core_field_exists(struct page___ci, compound_info) ||
		   kread(page + KOFF(struct page___ci, compound_info), btf) & 1) {
		return 0;
	}
	/* coalesced folios (6.12+) keep the head and an offset into the folio */
	at = kread(bv + KOFF(struct bio_vec, bv_offset), btf);
	*pgoff = kread(head + KOFF(struct folio, index), btf) +
		 (page - head) / bpf_core_type_size(struct page) + (at >> 12);
	return kread(head + KOFF(struct folio, mapping), btf);
}

/* The table slot buffer n of the call set, or UW_NO_BUF. */
static __always_inline __u32 buf_slot(struct uw_slot *s, __u32 n)
{
	__u32 op = s->call.opcode & ~IORING_REGISTER_USE_REGISTERED_RING;
	__s64 ret = s->call.ret;

	if (ret < 0)
		return UW_NO_BUF;
	if (op == IORING_REGISTER_BUFFERS || op == IORING_REGISTER_BUFFERS2)
		return n;
	/* an update did ret entries from `offset`, the head's first field */
	if (op != IORING_REGISTER_BUFFERS_UPDATE || !head_has(s, 4) || n >= ret)
		return UW_NO_BUF;
	return data_s32(s, OFF(io_uring_rsrc_update2, offset)) + n;
}

/* Whether what the ring pinned for buffer n is of the mapping found at its
 * address (the vma's file in s->scratch, its anon_vma in s->vma_anon). */
static __always_inline __u16 pinned_verdict(struct uw_slot *s, struct uw_mem *m, __u32 n,
					    const bool btf)
{
	__u64 imu, mapping, pgoff = 0, a, b;
	__u32 slot = buf_slot(s, n);

	if (slot == UW_NO_BUF || !m->addr || (m->flags & UW_M_BUSY) || !s->ring_ctx)
		return 0;
	imu = table_buf(s->ring_ctx, slot, btf);
	if (!imu)
		return 0;
	if (kread(imu + KOFF(struct io_mapped_ubuf, ubuf), btf) != m->addr)
		return UW_M_RACED;      /* the slot holds another buffer by now */
	mapping = pinned_page(imu, &pgoff, btf);
	if (!mapping || (mapping & UW_MAPPING_BITS) > UW_MAPPING_ANON)
		return 0;
	if (!(m->flags & UW_M_FOUND))
		return UW_M_RACED;      /* pinned, and nothing mapped there now */
	if (!(m->vm_flags & UW_VM_HUGETLB) &&
	    pgoff != m->vm_pgoff + ((m->addr - m->vm_start) >> 12))
		return UW_M_RACED;
	if (mapping & UW_MAPPING_ANON) {
		a = kread((mapping & ~UW_MAPPING_BITS) + KOFF(struct anon_vma, root), btf);
		b = s->vma_anon ? kread(s->vma_anon + KOFF(struct anon_vma, root), btf) : 0;
		return b && a == b ? UW_M_KERNEL : UW_M_RACED;
	}
	return s->scratch && mapping == kread(s->scratch + KOFF(struct file, f_mapping), btf) ?
	       UW_M_KERNEL : UW_M_RACED;
}

static __always_inline int check_mem(__u32 idx, __u32 off, __u32 n, const bool btf)
{
	struct uw_slot *s = bpf_map_lookup_elem(&slots, &idx);
	__u64 at = off;
	struct uw_mem *m;

	keep(at);
	if (!s || at > UW_DATA_MAX - sizeof(struct uw_mem))
		return 0;
	keep(at);
	m = (void *)&s->data[at];
	m->flags |= pinned_verdict(s, m, n, btf);
	return 0;
}

__noinline int uw_mem_check_btf(__u32 idx, __u32 off, __u32 n)
{
	return check_mem(idx, off, n, true);
}

__noinline int uw_mem_check_pr(__u32 idx, __u32 off, __u32 n)
{
	return check_mem(idx, off, n, false);
}

/* Checks fd entry i of slot idx (see the top of this file). Global, with
 * the resolving inlined: the verifier checks it once, and the calls stay
 * as deep as enter's (a call deeper overflows 512 bytes of stack). */
static __always_inline int check_file(__u32 idx, __u32 i, const bool btf)
{
	struct uw_slot *s = bpf_map_lookup_elem(&slots, &idx);
	__u64 e, x, k, at = i, off;
	struct uw_file *f;
	__u32 base;

	keep(at);
	if (!s || at >= UW_FILES_MAX)
		return 0;
	keep(at);
	e = s->enter_file[at];
	base = s->call.region[0].len + s->call.region[1].len + s->call.region[2].len;
	f = entry_at(s, base, at, &off);
	if (!f)
		return 0;
	x = fd_file(s, f->fd, btf);
	k = held(s, f->role, f->index, e, btf);
	if (k == e) {
		f->flags |= UW_FL_KERNEL;
		return 0;
	}
	if (k == K_NONE && x == e) {
		f->flags |= UW_FL_SAME_AT_EXIT;
		return 0;
	}
	f->flags |= UW_FL_RACED;
	if (k > K_OTHER)
		add_other(s, idx, base, f, k, UW_FL_AT_EXIT | UW_FL_KERNEL, btf);
	else if (x != e)
		add_other(s, idx, base, f, x, UW_FL_AT_EXIT, btf);
	return 0;
}

__noinline int uw_check_btf(__u32 idx, __u32 i)
{
	return check_file(idx, i, true);
}

__noinline int uw_check_pr(__u32 idx, __u32 i)
{
	return check_file(idx, i, false);
}

/* At exit, before the buffers: checks every fd entry made at enter. */
static __always_inline void check_files(struct uw_slot *s, __u32 idx, const bool btf)
{
	__u32 n = s->call.ident.nfiles, i;

	if (cfg.resolve != UW_RES_PROBE_READ && cfg.resolve != UW_RES_BTF)
		return;         /* off, proc: nothing read at enter */
	s->call.ident.flags |= UW_I_CHECKED;
	fdt_load(s, btf);       /* the table at exit */
#pragma nounroll
	for (i = 0; i < UW_FILES_MAX; i++) {
		if (i >= n)
			break;
		if (btf)
			uw_check_btf(idx, i);
		else
			uw_check_pr(idx, i);
	}
}

#endif
