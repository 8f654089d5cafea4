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
 * open file, not at all (README, Identities).
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
} __attribute__((preserve_access_index));

struct io_ring_ctx___v510 {
	struct eventfd_ctx *cq_ev_fd;
} __attribute__((preserve_access_index));

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
	x = fd_file(f->fd, btf);
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
