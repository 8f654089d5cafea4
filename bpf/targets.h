/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What an operation acts on and what it did: for each operation that
 * opens, creates, connects, binds, unlinks, renames or links, and each
 * fixed-buffer read or write of length 0, one uw_action record with its
 * target as the kernel took it (read at submission from the request prep
 * filled: the kernel's copy of a path, open_how, socket arguments, the
 * address) and its completion's result.
 *
 * At submission the record waits in `pending`, keyed by the request's
 * address, for io_uring_complete to give it its result; a request
 * submitted again at an address whose completion was not seen (a skipped
 * CQE, a completion before tracing) sends the old record as UNSEEN. Reads
 * go through identity.h's kread: BTF-typed in the _btf object, else
 * bpf_probe_read_kernel; none when identities are not read in the kernel.
 *
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_TARGETS_H
#define URINGWATCH_TARGETS_H

#ifdef UW_KFUNC
#define ACT_BTF true
#define ACT_RESOLVE UW_RES_BTF
#else
#define ACT_BTF false
#define ACT_RESOLVE UW_RES_PROBE_READ
#endif

#define UW_AF_UNIX 1
#define UW_AF_MAX 46

#define ACT_OP(op) (1ULL << IORING_OP_##op)
/* The opcodes reported each: python/uringwatch/record/targets.py lists them too */
#define ACT_OPS (ACT_OP(OPENAT) | ACT_OP(OPENAT2) | ACT_OP(STATX) | ACT_OP(UNLINKAT) | \
		 ACT_OP(RENAMEAT) | ACT_OP(MKDIRAT) | ACT_OP(SYMLINKAT) | ACT_OP(LINKAT) | \
		 ACT_OP(SOCKET) | ACT_OP(CONNECT) | ACT_OP(BIND) | ACT_OP(LISTEN) | \
		 ACT_OP(ACCEPT) | ACT_OP(SETXATTR) | ACT_OP(GETXATTR) | ACT_OP(FSETXATTR) | \
		 ACT_OP(FGETXATTR))
/* Fixed-buffer ops, reported each when their length is 0 (act__submit
 * drops the others): with the address they name in a registered buffer,
 * user space can tell one at the buffer's very end, where the kernel's
 * bounds check (addr + len <= end) passes with nothing to bound. */
#define ACT_FIXED_OPS (ACT_OP(READ_FIXED) | ACT_OP(WRITE_FIXED))
/* The ops that name a path (in an SQE: addr, and addr2 for two) */
#define ACT_PATH_OPS (ACT_OP(OPENAT) | ACT_OP(OPENAT2) | ACT_OP(STATX) | ACT_OP(UNLINKAT) | \
		      ACT_OP(MKDIRAT) | ACT_OP(RENAMEAT) | ACT_OP(SYMLINKAT) | ACT_OP(LINKAT))
#define ACT_TWO_PATH_OPS (ACT_OP(RENAMEAT) | ACT_OP(SYMLINKAT) | ACT_OP(LINKAT))
#define UW_CQE_F_MORE (1U << 1)  /* IORING_CQE_F_MORE: a multishot request goes on */

/* Actions waiting for their completion, by request address. Not LRU: an
 * eviction would lose one; when full, an action is sent at submission
 * without its result (UNJOINED). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct uw_action);
} pending SEC(".maps");

/* How many entries `pending` holds, so that a completion with none
 * waiting costs one array read, not a hash lookup (the record being built
 * is maps.h's act_scratch). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} act_waiting SEC(".maps");

/* Each process's run of identical actions (uw_act_run). Not LRU: an
 * eviction would lose a count; when full, a new process's actions are
 * sent each. An entry goes when its process's leader ends. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct uw_act_run);
} act_runs SEC(".maps");

/* All zeros: the value a process's first run is made from. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_act_run);
} act_run_zero SEC(".maps");

/* From 7.0 a request holds its names as `struct delayed_filename`, one
 * pointer to the struct filename, where older kernels hold the pointer. */
struct uw_delayed_filename {
	void *name;
};
struct io_open___df { struct uw_delayed_filename filename; } __attribute__((preserve_access_index));
struct io_statx___df { struct uw_delayed_filename filename; } __attribute__((preserve_access_index));
struct io_unlink___df { struct uw_delayed_filename filename; } __attribute__((preserve_access_index));
struct io_mkdir___df { struct uw_delayed_filename filename; } __attribute__((preserve_access_index));
struct io_rename___df {
	struct uw_delayed_filename oldpath;
	struct uw_delayed_filename newpath;
} __attribute__((preserve_access_index));
struct io_link___df {
	struct uw_delayed_filename oldpath;
	struct uw_delayed_filename newpath;
} __attribute__((preserve_access_index));
struct io_xattr___df { struct uw_delayed_filename filename; } __attribute__((preserve_access_index));

/* Offset in the request of its struct filename pointer, either shape;
 * 0 (never a name's offset: the file pointer is there) if neither. */
#define NAME_OFF(type, field)							\
	(bpf_core_field_exists(struct type, field) ?				\
	 (__u64)bpf_core_field_offset(struct type, field) :			\
	 bpf_core_field_exists(struct type##___df, field) ?			\
	 (__u64)bpf_core_field_offset(struct type##___df, field) : 0)

#define ACT_FIELD(type, field) \
	(bpf_core_field_exists(struct type, field) ? KOFF(struct type, field) : 0)

static __always_inline __u64 act_u64(__u64 req, __u64 off)
{
	return off ? kread(req + off, ACT_BTF) : 0;
}

static __always_inline __s32 act_s32(__u64 req, __u64 off)
{
	return (__s32)act_u64(req, off);
}

/* Copies the string at kernel address `name` into path (which 0) or
 * path2 of the record being built, 8 bytes a read, up to its NUL; true if
 * it ended within UW_ACT_PATH. One global function: verified once. */
__noinline int uw_act_path(__u32 which, __u64 name)
{
	__u32 zero = 0, i;
	struct uw_action *a = bpf_map_lookup_elem(&act_scratch, &zero);
	__u64 v, z;
	char *dst;

	if (!a || !name)
		return 0;
	dst = which ? a->path2 : a->path;
	for (i = 0; i < UW_ACT_PATH / 8; i++) {
		v = kread(name + i * 8, ACT_BTF);
		/* a NUL byte in v: keep the bytes before the first one */
		z = (v - 0x0101010101010101ULL) & ~v & 0x8080808080808080ULL;
		if (z) {
			z &= -z;
			*(__u64 *)&dst[i * 8] = v & ((z >> 7) - 1);
			return 1;
		}
		*(__u64 *)&dst[i * 8] = v;
	}
	return 0;
}

/* The name behind a request's struct filename pointer at req + off. */
static __always_inline void act_name(struct uw_action *a, __u64 req, __u64 off, __u32 which)
{
	__u64 fname = act_u64(req, off);
	__u64 name = fname ? kread(fname + KOFF(struct filename, name), ACT_BTF) : 0;

	if (!name) {
		a->flags |= UW_ACT_FAULT;
		return;
	}
	if (!uw_act_path(which, name))
		a->flags |= which ? UW_ACT_PATH2_TRUNC : UW_ACT_PATH_TRUNC;
}

/* Whether a u16 is the family of an address a program would connect or
 * bind to: a kernel pointer's low bits never are (8-byte aligned). */
static __always_inline bool act_family(__u16 f)
{
	return f == UW_AF_UNIX || f == UW_AF_INET || f == UW_AF_INET6;
}

/* Where prep put the kernel's copy of a CONNECT's or BIND's address, in
 * the request's async data: at its start (a bare sockaddr_storage: stable
 * kernels since mid-2026, 7.1+), or io_async_msghdr's `addr` (6.10 on).
 * Nothing in BTF tells them apart, so the copy's first bytes do: the
 * family where the address is, a pointer's or counter's bits elsewhere. */
static __always_inline __u64 act_addr_src(__u64 async)
{
	__u64 old = async + KOFF(struct io_async_msghdr, addr);
	__u16 f0 = kread(async, ACT_BTF), f1;

	if (act_family(f0))
		return async;
	f1 = kread(old, ACT_BTF);
	if (act_family(f1))
		return old;
	return f0 && f0 < UW_AF_MAX ? async : old;
}

/* The address a CONNECT or BIND names: prep's kernel copy in its async
 * data (6.10+), else (CONNECT before 6.10) the caller's memory now, which
 * the kernel reads at issue. */
static __always_inline void act_addr(struct uw_action *a, __u64 req, __u64 uaddr_off,
				     __u64 len_off)
{
	__u32 len = act_s32(req, len_off), i;
	__u64 src, uaddr, async = act_u64(req, KOFF(struct io_kiocb, async_data));

	a->addr_len = len;
	if (len > UW_ACT_ADDR)
		len = UW_ACT_ADDR;
	if (async) {
		src = act_addr_src(async);
#pragma unroll
		for (i = 0; i < UW_ACT_ADDR / 8; i++)
			if (i * 8 < len)
				*(__u64 *)&a->addr[i * 8] = kread(src + i * 8, ACT_BTF);
		return;
	}
	uaddr = act_u64(req, uaddr_off);
	a->flags |= UW_ACT_ADDR_USER;
	/* len <= UW_ACT_ADDR already; the mask is for the verifier (the
	 * record goes on past addr) */
	keep(len);
	len &= 0x7f;
	if (!uaddr || !len || bpf_probe_read_user(a->addr, len, (void *)uaddr))
		a->flags |= UW_ACT_FAULT;
}

/* The identity of `file` (0: the fd named none) into the record's
 * `file`, by identity.h's resolve_file, as a register call's files. */
static __always_inline void act_file(struct uw_action *a, __u64 file)
{
	a->flags |= UW_ACT_FILE;
	if (ACT_BTF)
		uw_file_btf(UW_ACT_SLOT, 0, file);
	else
		uw_file_pr(UW_ACT_SLOT, 0, file);
}

/* The directory a relative path is looked up from, when the op names one
 * by fd (not AT_FDCWD): read now from the fd table the submitter shares
 * with the io-wq workers and SQPOLL thread that do its ops. */
static __always_inline void act_dir(struct uw_action *a, __s32 dfd, char first)
{
	if (dfd >= 0 && first != '/')
		act_file(a, task_fd_file(dfd, ACT_BTF));
}

/* An xattr op's attribute name (prep's kernel copy) into path2, its
 * flags and size into arg[0], arg[1]. */
static __always_inline void act_xattr(struct uw_action *a, __u64 r)
{
	__u64 kname = act_u64(r, ACT_FIELD(io_xattr, ctx.kname));

	a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_xattr, ctx.flags));
	a->arg[1] = act_u64(r, ACT_FIELD(io_xattr, ctx.size));
	if (!kname)
		a->flags |= UW_ACT_FAULT;
	else if (!uw_act_path(1, kname))      /* name is struct xattr_name's first member */
		a->flags |= UW_ACT_PATH2_TRUNC;
}

/* The op's target, from its prepared request. */
static __always_inline void act_target(struct uw_action *a, struct io_kiocb *req, __u8 op)
{
	__u64 r = addr_of(req);

	switch (op) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2:
		a->dfd = act_s32(r, ACT_FIELD(io_open, dfd));
		a->file_slot = act_s32(r, ACT_FIELD(io_open, file_slot));
		a->arg[0] = act_u64(r, ACT_FIELD(io_open, how.flags));
		a->arg[1] = act_u64(r, ACT_FIELD(io_open, how.mode));
		a->arg[2] = act_u64(r, ACT_FIELD(io_open, how.resolve));
		act_name(a, r, NAME_OFF(io_open, filename), 0);
		break;
	case IORING_OP_STATX:
		a->dfd = act_s32(r, ACT_FIELD(io_statx, dfd));
		a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_statx, flags));
		a->arg[1] = (__u32)act_s32(r, ACT_FIELD(io_statx, mask));
		act_name(a, r, NAME_OFF(io_statx, filename), 0);
		break;
	case IORING_OP_UNLINKAT:
		a->dfd = act_s32(r, ACT_FIELD(io_unlink, dfd));
		a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_unlink, flags));
		act_name(a, r, NAME_OFF(io_unlink, filename), 0);
		break;
	case IORING_OP_MKDIRAT:
		a->dfd = act_s32(r, ACT_FIELD(io_mkdir, dfd));
		a->arg[1] = (__u16)act_s32(r, ACT_FIELD(io_mkdir, mode));
		act_name(a, r, NAME_OFF(io_mkdir, filename), 0);
		break;
	case IORING_OP_RENAMEAT:
		a->dfd = act_s32(r, ACT_FIELD(io_rename, old_dfd));
		a->dfd2 = act_s32(r, ACT_FIELD(io_rename, new_dfd));
		a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_rename, flags));
		act_name(a, r, NAME_OFF(io_rename, oldpath), 0);
		act_name(a, r, NAME_OFF(io_rename, newpath), 1);
		break;
	case IORING_OP_SYMLINKAT:
	case IORING_OP_LINKAT:
		a->dfd = act_s32(r, ACT_FIELD(io_link, old_dfd));
		a->dfd2 = act_s32(r, ACT_FIELD(io_link, new_dfd));
		a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_link, flags));
		act_name(a, r, NAME_OFF(io_link, oldpath), 0);
		act_name(a, r, NAME_OFF(io_link, newpath), 1);
		break;
	case IORING_OP_SOCKET:
		a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_socket, domain));
		a->arg[1] = (__u32)act_s32(r, ACT_FIELD(io_socket, type));
		a->arg[2] = (__u32)act_s32(r, ACT_FIELD(io_socket, protocol));
		a->file_slot = act_s32(r, ACT_FIELD(io_socket, file_slot));
		break;
	case IORING_OP_CONNECT:
		act_addr(a, r, ACT_FIELD(io_connect, addr), ACT_FIELD(io_connect, addr_len));
		break;
	case IORING_OP_BIND:
		act_addr(a, r, 0, ACT_FIELD(io_bind, addr_len));
		break;
	case IORING_OP_LISTEN:
		a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_listen, backlog));
		break;
	case IORING_OP_ACCEPT:
		a->arg[0] = (__u32)act_s32(r, ACT_FIELD(io_accept, flags));
		a->file_slot = act_s32(r, ACT_FIELD(io_accept, file_slot));
		break;
	case IORING_OP_SETXATTR:
	case IORING_OP_GETXATTR:
		a->dfd = -100;          /* AT_FDCWD: the path's kind of lookup */
		act_name(a, r, NAME_OFF(io_xattr, filename), 0);
		act_xattr(a, r);
		break;
	case IORING_OP_FSETXATTR:
	case IORING_OP_FGETXATTR:
		act_xattr(a, r);
		break;
	case IORING_OP_READ_FIXED:
	case IORING_OP_WRITE_FIXED:
		/* the length is 0 (act__submit); the buffer's index is the key's */
		a->arg[0] = act_u64(r, ACT_FIELD(io_rw, addr));
		break;

	}
}

/* Sends an action through fairness like ring and op records: a flood of
 * actions spends its own process's budgets, not the tracer's ring. One not
 * sent is counted, and for its process (actions_dropped) with fairness on. */
static __always_inline void act_send(struct uw_action *a)
{
	if (!fair__emit(a, sizeof(*a), UW_REC_ACTION, false))
		bump(UW_CNT_ACTIONS_LOST);
}

/* What makes two actions of a process identical: ring, opcode, creds and
 * what it named and got (result, arguments, paths, address, thread,
 * completion flags, the file's identity), not its times or user_data.
 * Keyed (fairness's per-run key): a process can't craft a distinct
 * action that passes as a repeat of another. */
static __always_inline __u64 act_sig(struct uw_action *a)
{
	__u64 h = sig_mix(sig_mix(a->key.ring_id, a->key.cred_id), *(__u64 *)&a->key.file_slot);
	__u32 i;

	h = sig_mix(h, *(__u64 *)&a->key.euid);
	h = sig_mix(h, *(__u64 *)&a->key.opcode);
	for (i = __builtin_offsetof(struct uw_action, res) / 8;
	     i < __builtin_offsetof(struct uw_action, count) / 8; i++)
		h = sig_mix(h, ((__u64 *)a)[i]);
	h = sig_mix(h, a->file.ino);
	h = sig_mix(h, *(__u64 *)&a->file.dev);
	return sig_final(h);
}

/* The repeats a run folded, sent as a copy of its action (passing the
 * gates as a first: one per run), and forgotten. */
static __always_inline void act_run_flush(struct uw_act_run *r)
{
	__u64 n = r->count;

	if (!n)
		return;
	r->rec.flags |= UW_ACT_REPEATS;
	r->rec.count = n;
	r->rec.ts = r->first_ts;
	r->rec.ts_done = r->last_ts;
	if (!fair__emit(&r->rec, sizeof(r->rec), UW_REC_ACTION, true))
		bump(UW_CNT_ACTIONS_LOST);
	__sync_fetch_and_sub(&r->count, n);
}

/* A finished action (its completion seen, or refused): folded into its
 * process's run if identical to the run's action, else sent, and a new
 * run begins with it. */
static __always_inline void act_done(struct uw_action *a)
{
	__u32 pid = a->pid, zero = 0;
	__u64 sig = act_sig(a), now = bpf_ktime_get_boot_ns();
	struct uw_act_run *r = bpf_map_lookup_elem(&act_runs, &pid), *z;

	if (r && r->sig == sig && now - r->shown_ts < UW_ACT_RUN_NS) {
		if (__sync_fetch_and_add(&r->count, 1) == 0)
			r->first_ts = now;
		r->last_ts = now;
		return;
	}
	if (r)
		act_run_flush(r);
	act_send(a);
	if (!r) {
		z = bpf_map_lookup_elem(&act_run_zero, &zero);
		if (!z || bpf_map_update_elem(&act_runs, &pid, z, BPF_NOEXIST))
			return;
		r = bpf_map_lookup_elem(&act_runs, &pid);
		if (!r)
			return;
	}
	r->sig = sig;
	r->shown_ts = now;
	bpf_probe_read_kernel(&r->rec, sizeof(r->rec), a);
}

/* A process's leader ends: its run's repeats go, and its entry. */
static __always_inline void act__ended(__u64 pid_tgid)
{
	__u32 pid = pid_tgid >> 32;
	struct uw_act_run *r;

	if (pid != (__u32)pid_tgid)
		return;
	r = bpf_map_lookup_elem(&act_runs, &pid);
	if (!r)
		return;
	act_run_flush(r);
	bpf_map_delete_elem(&act_runs, &pid);
}

static __always_inline void act_waiting_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *w = bpf_map_lookup_elem(&act_waiting, &zero);

	if (w)
		__sync_fetch_and_add(w, n);
}

/* In on_submit, once its filters kept the op: an action's key, kept in
 * the scratch record for act__submit (the program's stack is full there). */
static __always_inline void act__key(struct uw_use_key *k, __u64 now, __u32 creator)
{
	__u32 zero = 0, op = k->opcode;
	struct uw_action *a;

	if (op >= 64 || !((ACT_OPS | ACT_FIXED_OPS) >> op & 1))
		return;
	a = bpf_map_lookup_elem(&act_scratch, &zero);
	if (!a)
		return;
	a->hdr.kind = UW_KIND_ACTION;
	a->key = *k;
	a->ts = now;
	a->creator_pid = creator;
}

/* A fixed-buffer op's length as prep took it from the SQE (io_rw's: a
 * u64 before 6.0, a u32 since); ~0 if not read. */
static __always_inline __u64 act_rw_len(__u64 r)
{
	__u64 len;

	if (cfg.resolve != ACT_RESOLVE || !bpf_core_field_exists(struct io_rw, len))
		return ~0ULL;
	len = act_u64(r, KOFF(struct io_rw, len));
	return bpf_core_field_size(struct io_rw, len) == 4 ? (__u32)len : len;
}

/* After on_submit: the action it kept waits in `pending` for its
 * completion. */
static __always_inline int act__submit(struct io_kiocb *req)
{
	__u32 zero = 0, creator;
	__u64 at, id;
	struct uw_action *a = bpf_map_lookup_elem(&act_scratch, &zero), *old;

	if (!a || a->hdr.kind != UW_KIND_ACTION)
		return 0;       /* not an action: all an operation pays here */
	if ((ACT_FIXED_OPS >> (a->key.opcode & 63) & 1) && act_rw_len(addr_of(req))) {
		a->hdr.kind = 0;        /* a fixed-buffer op with a length: no action */
		return 0;
	}
	at = addr_of(req);
	id = bpf_get_current_pid_tgid();
	creator = a->creator_pid;
	__builtin_memset(&a->ts_done, 0, sizeof(*a) - __builtin_offsetof(struct uw_action, ts_done));
	a->hdr.abi = UW_ABI_VERSION;
	a->hdr.size = sizeof(*a);
	a->cgroup_id = bpf_get_current_cgroup_id();
	a->user_data = req->cqe.user_data;
	a->pid = id >> 32;
	a->tid = (__u32)id;
	a->creator_pid = creator;
	a->count = 1;
	bpf_get_current_comm(a->comm, sizeof(a->comm));
	if (cfg.resolve == ACT_RESOLVE)
		act_target(a, req, a->key.opcode);
	else
		a->flags |= UW_ACT_NO_TARGET;
	old = bpf_map_lookup_elem(&pending, &at);
	if (old) {
		old->flags |= UW_ACT_UNSEEN;
		act_send(old);
	}
	if (bpf_map_update_elem(&pending, &at, a, BPF_ANY)) {
		a->flags |= UW_ACT_UNJOINED;
		act_send(a);
	} else if (!old) {
		act_waiting_add(1);
	}
	a->hdr.kind = 0;
	return 0;
}

/* What a refused SQE asked for, as the caller wrote it: its fd (dfd of
 * path ops), flags (open flags; a fixed-buffer op's address), len (an
 * open's mode) and the paths in its memory; prep failed, so nothing of it
 * is in the request. */
static __always_inline void act_sqe(struct uw_action *a, const struct io_uring_sqe *sqe, __u8 op)
{
	__u64 bit = op < 64 ? 1ULL << op : 0;

	a->dfd = sqe->fd;
	a->arg[0] = ACT_FIXED_OPS & bit ? sqe->addr : sqe->open_flags;
	a->arg[1] = sqe->len;
	if (!(ACT_PATH_OPS & bit) || cfg.resolve != ACT_RESOLVE)
		return;
	if (bpf_probe_read_user_str(a->path, sizeof(a->path), (void *)sqe->addr) < 0)
		a->flags |= UW_ACT_FAULT;
	if (ACT_TWO_PATH_OPS & bit) {
		a->dfd2 = op == IORING_OP_SYMLINKAT ? sqe->fd : (__s32)sqe->len;
		if (bpf_probe_read_user_str(a->path2, sizeof(a->path2), (void *)sqe->addr2) < 0)
			a->flags |= UW_ACT_FAULT;
	}
	act_dir(a, a->dfd, a->path[0]);
}

/* An SQE the ring refused at prep (io_uring_req_failed), any opcode, even
 * one the kernel does not know: an action with its errno, sent now (its
 * failure's completion is not waited for). Filtered as accepted ops are. */
static __always_inline int act__refused(const struct io_uring_sqe *sqe, struct io_kiocb *req,
					int error)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_boot_ns(), at = addr_of(req);
	__u32 zero = 0;
	struct ring_state *st;
	struct uw_use_key k = {};
	struct uw_action *a, *old;
	__u64 ring = ring_id_of(addr_of(req->ctx), &st);
	__u8 op = sqe->opcode;

	if (!op_allowed(id, task, st))
		return 0;
	a = bpf_map_lookup_elem(&act_scratch, &zero);
	if (!a)
		return 0;
	use_key(&k, req, task, ring);
	k.opcode = op;
	__builtin_memset(a, 0, sizeof(*a));
	a->hdr.kind = UW_KIND_ACTION;
	a->hdr.abi = UW_ABI_VERSION;
	a->hdr.size = sizeof(*a);
	a->key = k;
	a->ts = now;
	a->ts_done = now;
	a->res = error;
	a->count = 1;
	a->creator_pid = st ? st->creator.tgid : 0;
	a->cgroup_id = bpf_get_current_cgroup_id();
	a->user_data = sqe->user_data;
	a->pid = id >> 32;
	a->tid = (__u32)id;
	a->flags = UW_ACT_DONE | UW_ACT_REFUSED;
	bpf_get_current_comm(a->comm, sizeof(a->comm));
	act_sqe(a, sqe, op);
	act_done(a);
	a->hdr.kind = 0;
	/* an action waiting at this request's address never got its completion */
	old = bpf_map_lookup_elem(&pending, &at);
	if (old) {
		old->flags |= UW_ACT_UNSEEN;
		act_send(old);
		if (!bpf_map_delete_elem(&pending, &at))
			act_waiting_add(-1);
	}
	return 0;
}

/* The socket behind a CONNECT, BIND or LISTEN, as of its completion (the
 * request takes its file at issue): type and protocol into arg[1], arg[2]
 * (arg[0] of LISTEN is its backlog). */
static __always_inline void act_sock(struct uw_action *a, __u64 req)
{
	__u64 file = kread(req + KOFF(struct io_kiocb, file), ACT_BTF);
	__u64 inode = kread(file + KOFF(struct file, f_inode), ACT_BTF);
	__u64 sock, sk;

	if (!inode || (kread(inode + KOFF(struct inode, i_mode), ACT_BTF) & UW_S_IFMT) != UW_S_IFSOCK)
		return;
	sock = kread(file + KOFF(struct file, private_data), ACT_BTF);
	sk = kread(sock + KOFF(struct socket, sk), ACT_BTF);
	a->arg[1] = (__u16)kread(sock + KOFF(struct socket, type), ACT_BTF);
	a->arg[2] = sk ? (__u16)kread(sk + KOFF(struct sock, sk_protocol), ACT_BTF) : 0;
}

/* An ACCEPT's peer, as the kernel wrote it to the caller's sockaddr and
 * length at issue (read at completion, in the caller's memory). */
static __always_inline void act_peer(struct uw_action *a, __u64 req)
{
	__u64 uaddr = act_u64(req, ACT_FIELD(io_accept, addr));
	__u64 ulen = act_u64(req, ACT_FIELD(io_accept, addr_len));
	__u32 len = 0;

	if (!uaddr || !ulen)
		return;         /* the caller asked for no address */
	a->flags |= UW_ACT_ADDR_USER;
	if (bpf_probe_read_user(&len, sizeof(len), (void *)ulen)) {
		a->flags |= UW_ACT_FAULT;
		return;
	}
	a->addr_len = len;
	if (len > UW_ACT_ADDR)
		len = UW_ACT_ADDR;
	keep(len);
	len &= 0x7f;
	if (len && bpf_probe_read_user(a->addr, len, (void *)uaddr))
		a->flags |= UW_ACT_FAULT;
}

/* The file an op put in a fixed slot, from the ring's table at its
 * completion: file_slot is the slot + 1, or IORING_FILE_INDEX_ALLOC for
 * any, whose result is the slot the kernel chose; 0: the slot is empty. */
static __always_inline __u64 act_slot_file(struct uw_action *a, __u64 req)
{
	__u32 slot = a->file_slot == UW_FILE_INDEX_ALLOC ? (__u32)a->res : a->file_slot - 1;
	__u64 f = table_file(kread(req + KOFF(struct io_kiocb, ctx), ACT_BTF), slot, ACT_BTF);

	return f == K_NONE ? 0 : f;
}

/* Whether the op opens a file into a fixed slot: an OPENAT, OPENAT2,
 * ACCEPT or SOCKET with a file_index, that succeeded. */
static __always_inline bool act_into_slot(struct uw_action *a)
{
	__u8 op = a->key.opcode;

	return a->file_slot && a->res >= 0 && table_known() &&
	       (op == IORING_OP_OPENAT || op == IORING_OP_OPENAT2 || op == IORING_OP_ACCEPT ||
		op == IORING_OP_SOCKET);
}

/* The file an op names by fd, read at completion (the submit program's
 * stack has no room for identity.h's calls): the file an OPENAT opened
 * into an fd, or an OPENAT, ACCEPT or SOCKET into a fixed slot, so its
 * path is the one the kernel reached (through any symlink or dirfd), not
 * the one the caller wrote (an accepted socket's addresses in place of
 * its listener's); the op's own file,
 * which the request holds (ACCEPT's listening socket, F*XATTR's file,
 * fixed or not); or the directory a relative path was looked up from,
 * from the fd table (its number may name another one by now, if closed
 * and reused). */
static __always_inline void act_files(struct uw_action *a, __u64 req)
{
	__u8 op = a->key.opcode;

	if (act_into_slot(a)) {
		act_file(a, act_slot_file(a, req));
		a->flags |= UW_ACT_OPENED;
	} else if ((op == IORING_OP_OPENAT || op == IORING_OP_OPENAT2) && a->res >= 0 &&
		   !a->file_slot) {
		act_file(a, task_fd_file(a->res, ACT_BTF));
		a->flags |= UW_ACT_OPENED;
	} else if (op == IORING_OP_ACCEPT || op == IORING_OP_FSETXATTR || op == IORING_OP_FGETXATTR)
		act_file(a, kread(req + KOFF(struct io_kiocb, file), ACT_BTF));
	else if (op == IORING_OP_SYMLINKAT)   /* its target is not looked up: the link is */
		act_dir(a, a->dfd2, a->path2[0]);
	else if (op < 64 && (ACT_PATH_OPS >> op & 1))
		act_dir(a, a->dfd, a->path[0]);
}

/* A completion: the action its request is waiting with, if any, gets its
 * result and goes (from the scratch record, where its file is resolved);
 * a multishot request's (ACCEPT) goes on waiting. */
static __always_inline int act__complete(__u64 req, __s32 res, __u32 cflags)
{
	__u32 zero = 0;
	__s64 *w = bpf_map_lookup_elem(&act_waiting, &zero);
	struct uw_action *a, *waiting;

	if (!w || *w <= 0 || !req)
		return 0;
	waiting = bpf_map_lookup_elem(&pending, &req);
	a = bpf_map_lookup_elem(&act_scratch, &zero);
	if (!waiting || !a || bpf_probe_read_kernel(a, sizeof(*a), waiting))
		return 0;
	a->res = res;
	a->ts_done = bpf_ktime_get_boot_ns();
	if (cfg.resolve == ACT_RESOLVE && (a->key.opcode == IORING_OP_CONNECT ||
	    a->key.opcode == IORING_OP_BIND || a->key.opcode == IORING_OP_LISTEN))
		act_sock(a, req);
	if (cfg.resolve == ACT_RESOLVE && a->key.opcode == IORING_OP_ACCEPT && res >= 0)
		act_peer(a, req);
	if (cfg.resolve == ACT_RESOLVE)
		act_files(a, req);
	a->flags |= UW_ACT_DONE;
	act_done(a);
	a->hdr.kind = 0;
	if (cflags & UW_CQE_F_MORE)
		return 0;
	if (!bpf_map_delete_elem(&pending, &req))
		act_waiting_add(-1);
	return 0;
}

#endif
