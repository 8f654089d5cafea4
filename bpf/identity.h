/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Identities: what a call's fds, credentials and buffers referred to as of
 * the call, read in the kernel while it is in flight: files and
 * credentials at enter (the caller may close an fd as soon as the call
 * returns, and the number may then name another file), buffers at exit.
 *
 * Every read goes through kread(): 8 bytes of kernel memory at an address
 * computed from CO-RE field offsets. Two ways to do that one thing:
 *  - BTF (`btf` true): the address cast to a kernel struct with
 *    bpf_rdonly_cast (6.2+), then a typed load, which lockdown allows;
 *  - bpf_probe_read_kernel, where lockdown does not forbid it (5.10, 6.1).
 * `btf` is a constant per program: the *_btf programs carry the kfunc,
 * the others never reference it (older kernels refuse even a dead one).
 * They are only in the object built with UW_KFUNC (uringwatch_btf.bpf.o):
 * a kfunc extern makes libbpf load the kernel's own BTF for every program
 * of its object, which a kernel without /sys/kernel/btf/vmlinux (run with
 * --btf) does not have.
 *
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_IDENTITY_H
#define URINGWATCH_IDENTITY_H

#ifdef UW_KFUNC
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#endif

#define KOFF(type, field) ((__u64)bpf_core_field_offset(type, field))

#define UW_S_IFMT 0170000
#define UW_S_IFSOCK 0140000
#define UW_AF_INET 2
#define UW_AF_INET6 10
#define UW_PATH_DEPTH 16      /* dentries and mounts walked per path */
#define UW_NAME_CHUNKS 8      /* 8-byte reads per name: longer names truncate */

static __always_inline __u64 kread(__u64 addr, const bool btf)
{
	__u64 v = 0;

	if (!addr)
		return 0;
	if (btf) {
#ifdef UW_KFUNC
		/* any struct whose first member is 8 bytes: a fault reads 0 */
		struct timespec64 *p = bpf_rdonly_cast((void *)addr,
						       bpf_core_type_id_kernel(struct timespec64));
		return p->tv_sec;
#else
		return 0;       /* never called: no _btf programs in this object */
#endif
	}
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

/* The uw_file at data[off] of slot idx, or NULL. */
static __always_inline struct uw_file *file_at(__u32 idx, __u32 at)
{
	struct uw_slot *s;
	__u64 off = at;

	if (idx == UW_ACT_SLOT) {       /* the action being built: its one file */
		__u32 zero = 0;
		struct uw_action *a = bpf_map_lookup_elem(&act_scratch, &zero);

		if (!a)
			return 0;
		keep(a);        /* offset after the null check (6.1's verifier) */
		return &a->file;
	}
	if (idx == UW_OP_SLOT) {        /* the op record being built: its file, or
					 * (at 1) SPLICE/TEE's input */
		__u32 zero = 0;
		struct uw_op *o = bpf_map_lookup_elem(&op_scratch, &zero);

		if (!o)
			return 0;
		keep(o);
		return at ? &o->file_in : &o->file;
	}
	s = bpf_map_lookup_elem(&slots, &idx);
	keep(off);      /* one register for the check and the use */
	if (!s || off > UW_DATA_MAX - sizeof(struct uw_file))
		return 0;
	keep(off);
	return (void *)&s->data[off];
}

/* Appends dentry's name and a NUL to f->path at pos; returns the new pos.
 * A name that does not fit ends the path (leaf side kept): PATH_TRUNC. */
static __always_inline __u32 put_name(__u32 idx, __u32 off, __u32 pos, __u64 dentry,
				      const bool btf)
{
	struct uw_file *f = file_at(idx, off);
	__u64 len, name, v, at, rem;
	__u32 j;

	if (!f || (f->flags & UW_FL_PATH_TRUNC))
		return pos;
	len = kread(dentry + KOFF(struct dentry, d_name.hash_len), btf) >> 32;
	name = kread(dentry + KOFF(struct dentry, d_name.name), btf);
	if (len > UW_NAME_CHUNKS * 8 || pos + len + 8 > UW_PATH_MAX) {
		f->flags |= UW_FL_PATH_TRUNC;
		return pos;
	}
#pragma unroll
	for (j = 0; j < UW_NAME_CHUNKS; j++) {
		if (j * 8 >= len)
			break;
		v = kread(name + j * 8, btf);
		rem = len - j * 8;
		if (rem < 8)
			v &= (1ULL << (rem * 8)) - 1;
		at = pos + j * 8;
		keep(at);
		if (at > UW_PATH_MAX - 8)
			break;
		keep(at);
		*(__u64 *)&f->path[at] = v;
	}
	at = pos + len;
	keep(at);
	if (at >= UW_PATH_MAX)
		return pos;
	keep(at);
	f->path[at] = 0;
	return at + 1;
}

/* Global functions: the verifier checks each once, not once per fd and
 * path component, which keeps 5.10's and 6.1's verifiers within limits. */
__noinline int uw_name_btf(__u32 idx, __u32 off, __u32 pos, __u64 dentry)
{
	return put_name(idx, off, pos, dentry, true);
}

__noinline int uw_name_pr(__u32 idx, __u32 off, __u32 pos, __u64 dentry)
{
	return put_name(idx, off, pos, dentry, false);
}

/* A directory's path is read once per program run: a file whose parent
 * dentry and mount are those of the last file walked to the root gets its
 * own name, then that file's path after its name (uw_slot.dir). The memo
 * is reset with the fd table (fdt_load), at each run. */

/* Copies the memo's path after the name ending at pos in the uw_file at
 * data[off]; 0 when the walk would cut the path (it then does it all
 * again). Global: its bounds checks start afresh, which 6.1's verifier
 * needs (inlined, it lost them). */
__noinline int uw_dir_copy(__u32 idx, __u32 off, __u32 pos)
{
	struct uw_slot *s = bpf_map_lookup_elem(&slots, &idx);
	struct uw_file *f = file_at(idx, off);
	__u64 from, at, v, rem;
	__u32 n, j;

	if (!s || !f || (f->flags & UW_FL_PATH_TRUNC))
		return 0;
	n = s->dir.len - s->dir.start;
	if (n > UW_PATH_MAX || pos + n + 7 > UW_PATH_MAX)
		return 0;
#pragma unroll
	for (j = 0; j < UW_PATH_MAX / 8; j++) {
		if (j * 8 >= n)
			break;
		from = s->dir.at + OFF(uw_file, path) + s->dir.start + j * 8;
		at = off + OFF(uw_file, path) + pos + j * 8;
		keep(from);
		keep(at);
		if (from > UW_DATA_MAX - 8 || at > UW_DATA_MAX - 8)
			return 0;
		keep(from);
		keep(at);
		v = *(__u64 *)&s->data[from];
		rem = n - j * 8;
		if (rem < 8)
			v &= (1ULL << (rem * 8)) - 1;
		*(__u64 *)&s->data[at] = v;
	}
	f->flags |= UW_FL_ROOTED;
	f->path_len = pos + n;
	return 1;
}

static __always_inline bool copy_dir(__u32 idx, __u32 off, __u64 dentry, __u64 vfsmnt,
				     const bool btf)
{
	struct uw_slot *s = bpf_map_lookup_elem(&slots, &idx);
	__u64 parent;
	__u32 pos;

	if (!s || !s->dir.parent || !dentry || vfsmnt != s->dir.mnt)
		return false;
	parent = kread(dentry + KOFF(struct dentry, d_parent), btf);
	if (parent != s->dir.parent || parent == dentry ||
	    dentry == kread(vfsmnt + KOFF(struct vfsmount, mnt_root), btf))
		return false;
	pos = btf ? uw_name_btf(idx, off, 0, dentry) : uw_name_pr(idx, off, 0, dentry);
	return uw_dir_copy(idx, off, pos);
}

/* Remembers the path just walked, f's at data[off], for copy_dir: its
 * file's parent and mount, and where the parent's path starts in it. */
static __always_inline void memo_dir(__u32 idx, __u32 off, struct uw_file *f, __u64 parent,
				     __u64 vfsmnt, __u32 start)
{
	struct uw_slot *s = bpf_map_lookup_elem(&slots, &idx);

	if (!s || f->flags & (UW_FL_PATH_TRUNC | UW_FL_FAULT))
		return;
	s->dir.parent = parent;
	s->dir.mnt = vfsmnt;
	s->dir.at = off;
	s->dir.start = start;
	s->dir.len = f->path_len;
}

/* Walks from the file's dentry up to the root, crossing mounts through
 * struct mount (the vfsmount is its member `mnt`). A dentry that is its
 * own parent but no mount's root is a pseudo file's (pipe, socket, anon
 * inode, memfd): its name is all there is. */
static __always_inline void fill_path(__u32 idx, __u32 off, __u64 dentry, __u64 vfsmnt,
				      const bool btf)
{
	__u64 moff = KOFF(struct mount, mnt), mnt, up, parent, first = 0, mnt0 = vfsmnt;
	__u32 pos = 0, i, flags = UW_FL_PATH_TRUNC, start = 0;
	struct uw_file *f;

	if (copy_dir(idx, off, dentry, vfsmnt, btf))
		return;
#pragma unroll
	for (i = 0; i < UW_PATH_DEPTH; i++) {
		if (!dentry || !vfsmnt) {
			flags = UW_FL_FAULT;
			break;
		}
		if (dentry == kread(vfsmnt + KOFF(struct vfsmount, mnt_root), btf)) {
			mnt = vfsmnt - moff;
			up = kread(mnt + KOFF(struct mount, mnt_parent), btf);
			if (!up || up == mnt) {
				flags = UW_FL_ROOTED;
				break;
			}
			dentry = kread(mnt + KOFF(struct mount, mnt_mountpoint), btf);
			vfsmnt = up + moff;
			continue;
		}
		parent = kread(dentry + KOFF(struct dentry, d_parent), btf);
		pos = btf ? uw_name_btf(idx, off, pos, dentry) : uw_name_pr(idx, off, pos, dentry);
		if (parent == dentry) {
			flags = UW_FL_PSEUDO;
			break;
		}
		if (i == 0) {
			first = parent;
			start = pos;
		}
		dentry = parent;
	}
	f = file_at(idx, off);
	if (!f)
		return;
	f->flags |= flags;
	f->path_len = pos < UW_PATH_MAX ? pos : UW_PATH_MAX;
	if (first && flags == UW_FL_ROOTED)
		memo_dir(idx, off, f, first, mnt0, start);
}

static __always_inline void fill_sock(struct uw_file *f, __u64 sock, const bool btf)
{
	__u64 sk;

	if (!sock)
		return;
	f->type = kread(sock + KOFF(struct socket, type), btf);
	sk = kread(sock + KOFF(struct socket, sk), btf);
	if (!sk)
		return;
	f->flags |= UW_FL_SOCK;
	f->family = kread(sk + KOFF(struct sock, __sk_common.skc_family), btf);
	f->protocol = kread(sk + KOFF(struct sock, sk_protocol), btf);
	f->lport = kread(sk + KOFF(struct sock, __sk_common.skc_num), btf);
	f->rport = __builtin_bswap16(kread(sk + KOFF(struct sock, __sk_common.skc_dport), btf));
	if (f->family == UW_AF_INET) {
		*(__u32 *)f->laddr = kread(sk + KOFF(struct sock, __sk_common.skc_rcv_saddr), btf);
		*(__u32 *)f->raddr = kread(sk + KOFF(struct sock, __sk_common.skc_daddr), btf);
	} else if (f->family == UW_AF_INET6) {
		__u64 l = sk + KOFF(struct sock, __sk_common.skc_v6_rcv_saddr);
		__u64 r = sk + KOFF(struct sock, __sk_common.skc_v6_daddr);

		*(__u64 *)f->laddr = kread(l, btf);
		*(__u64 *)&f->laddr[8] = kread(l + 8, btf);
		*(__u64 *)f->raddr = kread(r, btf);
		*(__u64 *)&f->raddr[8] = kread(r + 8, btf);
	}
}

/* The current task's fd table, read once per program run into the slot:
 * every fd of the call is looked up in it. A table that grows meanwhile
 * stays readable until RCU frees it, after this run. */
static __always_inline void fdt_load(struct uw_slot *s, const bool btf)
{
	__u64 task = bpf_get_current_task();
	__u64 files = kread(task + KOFF(struct task_struct, files), btf);
	__u64 fdt = kread(files + KOFF(struct files_struct, fdt), btf);

	s->fd_max = kread(fdt + KOFF(struct fdtable, max_fds), btf);
	s->fd_array = kread(fdt + KOFF(struct fdtable, fd), btf);
	s->dir.parent = 0;      /* copy_dir: no path read yet in this run */
}

/* The struct file an fd of the current task names, as of now, or 0: for
 * a lone fd (an action's), where no slot holds the table. */
static __always_inline __u64 task_fd_file(__s32 fd, const bool btf)
{
	__u64 task = bpf_get_current_task();
	__u64 files = kread(task + KOFF(struct task_struct, files), btf);
	__u64 fdt = kread(files + KOFF(struct files_struct, fdt), btf);
	__u32 max = kread(fdt + KOFF(struct fdtable, max_fds), btf);

	if (fd < 0 || (__u32)fd >= max)
		return 0;
	return kread(kread(fdt + KOFF(struct fdtable, fd), btf) + (__u64)fd * 8, btf);
}

/* The struct file fd names in the table fdt_load read, or 0. */
static __always_inline __u64 fd_file(struct uw_slot *s, __s32 fd, const bool btf)
{
	if (fd < 0 || (__u32)fd >= s->fd_max || !s->fd_array)
		return 0;
	return kread(s->fd_array + (__u64)fd * 8, btf);
}

/* Fills the uw_file at data[off] of slot idx from `file` (0: the fd
 * named no open file). */
static __always_inline int resolve_file(__u32 idx, __u32 off, __u64 file, const bool btf)
{
	struct uw_file *f = file_at(idx, off);
	__u64 inode, sb, dentry, vfsmnt;

	if (!f)
		return 0;
	if (!file) {
		f->flags |= UW_FL_BADF;
		return 0;
	}
	inode = kread(file + KOFF(struct file, f_inode), btf);
	if (!inode) {
		f->flags |= UW_FL_FAULT;
		return 0;
	}
	f->flags |= UW_FL_FOUND;
	f->mode = (__u16)kread(inode + KOFF(struct inode, i_mode), btf);
	f->ino = kread(inode + KOFF(struct inode, i_ino), btf);
	sb = kread(inode + KOFF(struct inode, i_sb), btf);
	f->dev = kread(sb + KOFF(struct super_block, s_dev), btf);
	f->magic = kread(sb + KOFF(struct super_block, s_magic), btf);
	if ((f->mode & UW_S_IFMT) == UW_S_IFSOCK)
		fill_sock(f, kread(file + KOFF(struct file, private_data), btf), btf);
	dentry = kread(file + KOFF(struct file, f_path.dentry), btf);
	vfsmnt = kread(file + KOFF(struct file, f_path.mnt), btf);
	fill_path(idx, off, dentry, vfsmnt, btf);
	return 0;
}

__noinline int uw_file_btf(__u32 idx, __u32 off, __u64 file)
{
	return resolve_file(idx, off, file, true);
}

__noinline int uw_file_pr(__u32 idx, __u32 off, __u64 file)
{
	return resolve_file(idx, off, file, false);
}

/* The caller's credentials, which REGISTER_PERSONALITY saves. */
static __always_inline void fill_cred(struct uw_call *c, const bool btf)
{
	__u64 cred = kread(bpf_get_current_task() + KOFF(struct task_struct, cred), btf);
	struct uw_cred *u = &c->ident.cred;

	if (!cred)
		return;
	u->uid = kread(cred + KOFF(struct cred, uid), btf);
	u->euid = kread(cred + KOFF(struct cred, euid), btf);
	u->suid = kread(cred + KOFF(struct cred, suid), btf);
	u->fsuid = kread(cred + KOFF(struct cred, fsuid), btf);
	u->gid = kread(cred + KOFF(struct cred, gid), btf);
	u->egid = kread(cred + KOFF(struct cred, egid), btf);
	u->sgid = kread(cred + KOFF(struct cred, sgid), btf);
	u->fsgid = kread(cred + KOFF(struct cred, fsgid), btf);
	u->ngroups = kread(kread(cred + KOFF(struct cred, group_info), btf) +
			   KOFF(struct group_info, ngroups), btf);
	u->cap_effective = kread(cred + KOFF(struct cred, cap_effective), btf);
	u->cap_permitted = kread(cred + KOFF(struct cred, cap_permitted), btf);
	c->ident.flags |= UW_I_CRED;
}

/* A file met twice in a call is read once: uw_slot.seen maps a hash of
 * its struct file to the entry that has it (index + 1). A bucket is not
 * cleared between calls: it counts only if it names an entry of this call
 * (below n) whose file at enter is this one. */
static __always_inline __u32 seen_bucket(__u64 file)
{
	return (__u32)((file >> 6) * 0x9E3779B1ULL) >> (32 - 5) & (UW_SEEN - 1);
}

/* Copies the entry of this call that has `file` to f, if there is one. */
static __always_inline bool copy_seen(struct uw_slot *s, struct uw_file *f, __u32 base,
				      __u32 n, __u64 file)
{
	__u64 prev = s->seen[seen_bucket(file)], off;

	if (!file || !prev)
		return false;
	prev -= 1;
	keep(prev);
	if (prev >= n || prev >= UW_FILES_MAX || s->enter_file[prev] != file)
		return false;
	keep(prev);
	off = base + prev * sizeof(struct uw_file);
	keep(off);
	if (off > UW_DATA_MAX - sizeof(struct uw_file))
		return false;
	keep(off);
	__builtin_memcpy(f, &s->data[off], sizeof(*f));
	return true;
}

/* The ring's own fd, in every call of the ring: its identity (a pseudo
 * file's, "[io_uring]") kept per CPU with what it was read from, and
 * copied while the file, inode, inode number, dentry and name (length
 * and hash) are those. A pseudo file's name never changes; anything else
 * is read each time. */
struct uw_file_source {
	__u64 inode, ino, dentry, name;
};

struct uw_ring_ident {
	__u64 file;
	struct uw_file_source src;
	struct uw_file f;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_ring_ident);
} ring_idents SEC(".maps");

/* What a pseudo file's identity is read from. */
static __always_inline void file_source(struct uw_file_source *r, __u64 file, const bool btf)
{
	r->inode = kread(file + KOFF(struct file, f_inode), btf);
	r->ino = kread(r->inode + KOFF(struct inode, i_ino), btf);
	r->dentry = kread(file + KOFF(struct file, f_path.dentry), btf);
	r->name = kread(r->dentry + KOFF(struct dentry, d_name.hash_len), btf);
}

static __always_inline bool copy_ring(struct uw_file *f, __u64 file, const bool btf)
{
	__u32 zero = 0;
	struct uw_ring_ident *r = bpf_map_lookup_elem(&ring_idents, &zero);
	struct uw_file_source now;

	if (!r || !file || r->file != file)
		return false;
	file_source(&now, file, btf);
	if (now.inode != r->src.inode || now.ino != r->src.ino ||
	    now.dentry != r->src.dentry || now.name != r->src.name)
		return false;
	__builtin_memcpy(f, &r->f, sizeof(*f));
	return true;
}

static __always_inline void keep_ring(struct uw_file *f, __u64 file, const bool btf)
{
	__u32 zero = 0;
	struct uw_ring_ident *r = bpf_map_lookup_elem(&ring_idents, &zero);

	if (!r)
		return;
	r->file = 0;
	if (f->flags != (UW_FL_FOUND | UW_FL_PSEUDO))
		return;
	file_source(&r->src, file, btf);
	__builtin_memcpy(&r->f, f, sizeof(*f));
	r->file = file;
}

/* Adds a uw_file entry for fd (its role, and index in its array) to slot
 * idx, whose identities start at data[base], and resolves it unless user
 * space is to (or copies it: the same file earlier in the call, the ring). */
static __always_inline int add_fd(__u32 idx, __u32 base, __s32 fd, __u32 role_index,
				  const bool btf)
{
	struct uw_slot *s = bpf_map_lookup_elem(&slots, &idx);
	__u16 role = role_index >> 16;
	__u64 off, file, at;
	struct uw_file *f;
	__u32 n;

	if (!s)
		return 0;
	n = s->call.ident.nfiles;
	if (n >= UW_FILES_MAX) {
		s->call.ident.flags |= UW_I_FILES_TRUNC;
		return 0;
	}
	off = base + (__u64)n * sizeof(struct uw_file);
	keep(off);
	if (off > UW_DATA_MAX - sizeof(struct uw_file))
		return 0;
	keep(off);
	f = (void *)&s->data[off];
	s->call.ident.nfiles = n + 1;
	if (cfg.resolve == UW_RES_PROC) {
		__builtin_memset(f, 0, sizeof(*f));
		f->flags = UW_FL_UNRESOLVED;
		goto named;
	}
	/* kept for the check at exit (check_files); never in the record */
	file = fd_file(s, fd, btf);
	at = n;
	keep(at);
	if (at >= UW_FILES_MAX)
		return 0;
	keep(at);
	s->enter_file[at] = file;
	if (copy_seen(s, f, base, n, file) || (role == UW_ROLE_RING && copy_ring(f, file, btf)))
		goto named;
	__builtin_memset(f, 0, sizeof(*f));
	resolve_file(idx, off, file, btf);
	if (role == UW_ROLE_RING)
		keep_ring(f, file, btf);
	if (file)
		s->seen[seen_bucket(file)] = n + 1;
named:
	f->fd = fd;
	f->role = role;
	f->index = role_index;
	return 0;
}

__noinline int uw_add_fd_btf(__u32 idx, __u32 base, __s32 fd, __u32 role_index)
{
	return add_fd(idx, base, fd, role_index, true);
}

__noinline int uw_add_fd_pr(__u32 idx, __u32 base, __s32 fd, __u32 role_index)
{
	return add_fd(idx, base, fd, role_index, false);
}

#define ADD_FD(fd, role, index) \
	(btf ? uw_add_fd_btf(idx, base, fd, (role) << 16 | (index)) : \
	       uw_add_fd_pr(idx, base, fd, (role) << 16 | (index)))

/* A head of at least `need` bytes was captured. */
static __always_inline bool head_has(struct uw_slot *s, __u32 need)
{
	struct uw_region *r = &s->call.region[0];

	return r->len >= need && !(r->flags & UW_R_FAULT);
}

/* At enter: every fd the call carries, after the regions it was read
 * from: the ring's own, then the opcode's. */
static __always_inline void resolve_fds(struct uw_slot *s, __u32 idx, const bool btf)
{
	struct uw_call *c = &s->call;
	__u32 op = c->opcode & ~IORING_REGISTER_USE_REGISTERED_RING, i, n = 0, elem = 4, at = 0;
	__u32 base = c->region[0].len + c->region[1].len + c->region[2].len;
	__u16 role = UW_ROLE_FDS;

	s->ring_ctx = 0;        /* set by the io_uring_register tracepoint */
	c->ident.nfiles = 0;    /* the slot is not cleared between calls */
	c->ident.nmem = 0;
	c->ident.flags = 0;
	c->ident.path = cfg.resolve;
	if (cfg.resolve == UW_RES_OFF)
		return;
	if (cfg.resolve != UW_RES_PROC)
		fdt_load(s, btf);
	if (op == IORING_REGISTER_PERSONALITY && cfg.resolve != UW_RES_PROC)
		fill_cred(c, btf);
	if (!(c->opcode & IORING_REGISTER_USE_REGISTERED_RING) && c->fd >= 0)
		ADD_FD(c->fd, UW_ROLE_RING, 0);
	switch (op) {
	case IORING_REGISTER_EVENTFD:
	case IORING_REGISTER_EVENTFD_ASYNC:
		if (head_has(s, 4))
			ADD_FD(data_s32(s, 0), UW_ROLE_EVENTFD, 0);
		return;
	case IORING_REGISTER_SYNC_CANCEL:
		if (head_has(s, sizeof(struct io_uring_sync_cancel_reg)))
			ADD_FD(data_s32(s, OFF(io_uring_sync_cancel_reg, fd)), UW_ROLE_FD, 0);
		return;
	case IORING_REGISTER_CLONE_BUFFERS:
		if (head_has(s, sizeof(struct io_uring_clone_buffers)) &&
		    !(data_s32(s, OFF(io_uring_clone_buffers, flags)) &
		      IORING_REGISTER_SRC_REGISTERED))
			ADD_FD(data_s32(s, OFF(io_uring_clone_buffers, src_fd)), UW_ROLE_SRC_FD, 0);
		return;
	case IORING_REGISTER_SEND_MSG_RING:
		if (head_has(s, sizeof(struct io_uring_sqe)) &&
		    !(s->data[OFF(io_uring_sqe, flags)] & (1 << IOSQE_FIXED_FILE_BIT)))
			ADD_FD(data_s32(s, OFF(io_uring_sqe, fd)), UW_ROLE_SQE_FD, 0);
		return;
	case IORING_REGISTER_RING_FDS:
		elem = sizeof(struct io_uring_rsrc_update);
		at = OFF(io_uring_rsrc_update, data);
		role = UW_ROLE_RING_FDS;
		break;
	case IORING_REGISTER_FILES:
	case IORING_REGISTER_FILES2:
	case IORING_REGISTER_FILES_UPDATE:
	case IORING_REGISTER_FILES_UPDATE2:
		break;
	default:
		return;
	}
	if (c->region[1].flags & UW_R_FAULT)
		return;
	n = c->region[1].len / elem;
	if (c->region[1].count > n)
		c->ident.flags |= UW_I_FILES_TRUNC;
/* not unrolled: 64 calls are too many for clang to unroll */
#pragma nounroll
	for (i = 0; i < UW_FILES_MAX; i++) {
		__s32 fd;

		if (i >= n)
			break;
		fd = data_s32(s, c->region[0].len + i * elem + at);
		if (fd >= 0)    /* -1 sparse, -2 skip: no file */
			ADD_FD(fd, role, i);
	}
	if (n > UW_FILES_MAX)
		c->ident.flags |= UW_I_FILES_TRUNC;
}

/* bpf_find_vma's callback: the mapping holding the buffer. Its file goes
 * through the slot (a map value), where a pointer reads back as a number
 * the file resolver takes. */
struct vma_ctx {
	struct uw_slot *s;
	struct uw_mem *m;
};

static long vma_found(struct task_struct *task, struct vm_area_struct *vma, struct vma_ctx *x)
{
	struct uw_mem *m = x->m;

	m->vm_start = vma->vm_start;
	m->vm_end = vma->vm_end;
	m->vm_pgoff = vma->vm_pgoff;
	m->vm_flags = vma->vm_flags;
	m->flags |= UW_M_FOUND;
	x->s->scratch = (__u64)vma->vm_file;
	x->s->vma_anon = (__u64)vma->anon_vma;
	return 0;
}

/* identity_check.h: the buffer against what the ring pinned */
__noinline int uw_mem_check_btf(__u32 idx, __u32 off, __u32 n);
__noinline int uw_mem_check_pr(__u32 idx, __u32 off, __u32 n);

/* Adds a uw_mem entry for a buffer and, with `loop` (bpf_find_vma is a
 * callback helper, 5.17+), looks up its mapping. */
static __always_inline void add_mem(struct uw_slot *s, __u32 idx, __u32 base, __u64 addr,
				    __u64 len, const bool btf, const bool loop)
{
	__u32 n = s->call.ident.nmem;
	__u64 off = base + (__u64)n * sizeof(struct uw_mem);
	struct vma_ctx x = { .s = s };
	struct uw_mem *m;
	long err;

	if (n >= UW_MEMS_MAX) {
		s->call.ident.flags |= UW_I_MEMS_TRUNC;
		return;
	}
	keep(off);
	if (off > UW_DATA_MAX - sizeof(struct uw_mem))
		return;
	keep(off);
	m = (void *)&s->data[off];
	__builtin_memset(m, 0, sizeof(*m));
	m->addr = addr;
	m->len = len;
	s->call.ident.nmem = n + 1;
	if (!loop || cfg.resolve == UW_RES_PROC) {
		m->flags = UW_M_UNRESOLVED;
		return;
	}
	x.m = m;
	s->scratch = 0;
	s->vma_anon = 0;
	err = bpf_find_vma(bpf_get_current_task_btf(), addr, vma_found, &x, 0);
	if (err == -16)        /* EBUSY: the mm's lock was taken */
		m->flags |= UW_M_BUSY;
	else if (err)
		m->flags |= UW_M_NOVMA;
	if (btf)
		uw_mem_check_btf(idx, off, n);
	else
		uw_mem_check_pr(idx, off, n);
	if (!s->scratch)
		return;
	m->flags |= UW_M_FILE;
	m->file.role = UW_ROLE_MEM;
	m->file.fd = -1;
	if (btf)
		uw_file_btf(idx, off + OFF(uw_mem, file), s->scratch);
	else
		uw_file_pr(idx, off + OFF(uw_mem, file), s->scratch);
}

/* At exit: the memory behind every buffer the call registers, placed
 * after the files. */
static __always_inline void resolve_mems(struct uw_slot *s, __u32 idx, const bool btf,
					 const bool loop)
{
	struct uw_call *c = &s->call;
	__u32 op = c->opcode & ~IORING_REGISTER_USE_REGISTERED_RING, i, n, r0 = c->region[0].len;
	__u32 base = r0 + c->region[1].len + c->region[2].len +
		     c->ident.nfiles * sizeof(struct uw_file);

	if (cfg.resolve == UW_RES_OFF)
		return;
	if (loop && (cfg.resolve == UW_RES_PROBE_READ || cfg.resolve == UW_RES_BTF))
		c->ident.flags |= UW_I_MEM_CHECKED;
	switch (op) {
	case IORING_REGISTER_PBUF_RING:
		if (head_has(s, sizeof(struct io_uring_buf_reg)) &&
		    !(*(__u16 *)&s->data[OFF(io_uring_buf_reg, flags)] & IOU_PBUF_RING_MMAP))
			add_mem(s, idx, base, data_u64(s, OFF(io_uring_buf_reg, ring_addr)),
				(__u64)data_s32(s, OFF(io_uring_buf_reg, ring_entries)) * 16,
				btf, loop);
		return;
	case IORING_REGISTER_MEM_REGION:
		if (c->region[1].len >= sizeof(struct io_uring_region_desc) &&
		    !(c->region[1].flags & UW_R_FAULT) &&
		    (data_s32(s, r0 + OFF(io_uring_region_desc, flags)) &
		     IORING_MEM_REGION_TYPE_USER))
			add_mem(s, idx, base, data_u64(s, r0 + OFF(io_uring_region_desc, user_addr)),
				data_u64(s, r0 + OFF(io_uring_region_desc, size)), btf, loop);
		return;
	case IORING_REGISTER_BUFFERS:
	case IORING_REGISTER_BUFFERS2:
	case IORING_REGISTER_BUFFERS_UPDATE:
		break;
	default:
		return;
	}
	if (c->region[1].flags & UW_R_FAULT)
		return;
	n = c->region[1].len / sizeof(struct iovec);
	if (c->region[1].count > n)
		c->ident.flags |= UW_I_MEMS_TRUNC;
#pragma unroll
	for (i = 0; i < UW_MEMS_MAX; i++) {
		__u64 at = r0 + i * sizeof(struct iovec);

		if (i >= n)
			break;
		add_mem(s, idx, base, data_u64(s, at), data_u64(s, at + 8), btf, loop);
	}
	if (n > UW_MEMS_MAX)
		c->ident.flags |= UW_I_MEMS_TRUNC;
}

/* Bytes of identities in the record, between regions 2 and 3. */
static __always_inline __u32 ident_bytes(struct uw_call *c)
{
	return c->ident.nfiles * sizeof(struct uw_file) + c->ident.nmem * sizeof(struct uw_mem);
}

#endif
