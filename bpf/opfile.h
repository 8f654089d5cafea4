/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What an operation's fd names: the open file the submitter's fd table
 * holds at that number when the ring takes the request, or for a fixed
 * file the one the ring's table holds at that slot, read in the kernel at
 * submission. The request itself gets its file only at issue
 * (io_assign_file), perhaps in an io-wq worker, after the caller may have
 * closed the fd and opened another file at its number, or updated the
 * slot.
 *
 * Its keyed id goes in the op's key (rings.h), so each (ring, op, file)
 * is a first use of its own, counted apart; its identity (identity.h's
 * resolve_file: path, dev/ino, mode, socket addresses) goes in that first
 * use's record only.
 *
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_OPFILE_H
#define URINGWATCH_OPFILE_H

#define FILE_OP(op) (1ULL << IORING_OP_##op)
/* The opcodes that take a file by fd: those whose io_issue_def has
 * needs_file (io_uring/opdef.c), for which io_init_req copies the SQE's fd
 * into req->cqe.fd. The one list of them (docs/RINGS.md names them). */
#define FILE_OPS (FILE_OP(READV) | FILE_OP(WRITEV) | FILE_OP(FSYNC) | FILE_OP(READ_FIXED) |	\
		  FILE_OP(WRITE_FIXED) | FILE_OP(POLL_ADD) | FILE_OP(SYNC_FILE_RANGE) |	\
		  FILE_OP(SENDMSG) | FILE_OP(RECVMSG) | FILE_OP(ACCEPT) | FILE_OP(CONNECT) |	\
		  FILE_OP(FALLOCATE) | FILE_OP(READ) | FILE_OP(WRITE) | FILE_OP(FADVISE) |	\
		  FILE_OP(SEND) | FILE_OP(RECV) | FILE_OP(SPLICE) | FILE_OP(TEE) |		\
		  FILE_OP(SHUTDOWN) | FILE_OP(MSG_RING) | FILE_OP(FSETXATTR) |		\
		  FILE_OP(FGETXATTR) | FILE_OP(URING_CMD) | FILE_OP(SEND_ZC) |		\
		  FILE_OP(SENDMSG_ZC) | FILE_OP(READ_MULTISHOT) | FILE_OP(FTRUNCATE) |	\
		  FILE_OP(BIND) | FILE_OP(LISTEN) | FILE_OP(RECV_ZC) | FILE_OP(EPOLL_WAIT) |	\
		  FILE_OP(READV_FIXED) | FILE_OP(WRITEV_FIXED))

/* A keyed id of an open file: its struct file's address, its inode's and
 * the inode's number. A freed struct file is soon another file's (files
 * are SLAB_TYPESAFE_BY_RCU), so the address alone would make a reopened
 * fd the same target; a socket's inode number is new for every socket. */
static __always_inline __u64 file_key_id(__u64 file, __u64 inode, __u64 ino)
{
	return mix64(mix64(mix64(file ^ cfg.id_key[0]) + inode) + (ino ^ cfg.id_key[1])) | 1;
}

/* The open file an op's fd names at submission: the submitter's fd table
 * at that number (an SQPOLL thread shares its creator's), or for a fixed
 * file (IOSQE_FIXED_FILE) the ring's registered-file table at that slot,
 * as FILES_UPDATE, a close or a fixed-slot open left it (identity_check.h
 * reads every layout); 0: none. Sets the target flags it looked up by;
 * none where this kernel's table layout is not known. */
static __always_inline __u64 op__file(struct uw_op_key *k, struct io_kiocb *req, __u64 r)
{
	__u64 file;

	if (!(k->use.flags & UW_OP_FIXED_FILE)) {
		k->target |= UW_OPT_FD;
		return task_fd_file(req->cqe.fd, ACT_BTF);
	}
	if (!table_known())
		return 0;
	k->target |= UW_OPT_FD | UW_OPT_SLOT;
	file = table_file(kread(r + KOFF(struct io_kiocb, ctx), ACT_BTF), (__u32)req->cqe.fd,
			  ACT_BTF);
	return file == K_NONE ? 0 : file;
}

#define UW_SPLICE_F_FD_IN_FIXED (1U << 31)   /* uapi io_uring.h: splice_fd_in is a slot */

#define UW_DEST_MAX 128      /* sizeof(struct sockaddr_storage) */

/* SPLICE's and TEE's input as op__input found it, and a send's
 * destination as op__dest read it, for op__ident: the submit programs'
 * stack has no room to carry them there. */
struct op_in {
	__u64 file;
	__s32 fd;             /* splice_fd_in: an fd, or a slot */
	__u32 dest_len;       /* the sockaddr's bytes kept in dest */
	__u64 dest_id;
	__u8 dest[UW_DEST_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct op_in);
} op_in_file SEC(".maps");

/* The file SPLICE and TEE read from, as prep left it in the request
 * (io_splice's splice_fd_in, a slot with SPLICE_F_FD_IN_FIXED) and the fd
 * table or the ring's table name it at submission: its keyed id in the
 * key beside the output's, the file itself in op_in_file. */
static __always_inline void op__input(struct uw_op_key *k, __u64 r)
{
	__u32 zero = 0, flags;
	struct op_in *in = bpf_map_lookup_elem(&op_in_file, &zero);
	__u64 file, inode;
	__s32 fd;

	if (!in || !bpf_core_field_exists(struct io_splice, splice_fd_in))
		return;
	fd = act_s32(r, ACT_FIELD(io_splice, splice_fd_in));
	flags = act_s32(r, ACT_FIELD(io_splice, flags));
	if (flags & UW_SPLICE_F_FD_IN_FIXED) {
		if (!table_known())
			return;
		k->target |= UW_OPT_IN_SLOT;
		file = table_file(kread(r + KOFF(struct io_kiocb, ctx), ACT_BTF), (__u32)fd,
				  ACT_BTF);
		file = file == K_NONE ? 0 : file;
	} else {
		file = task_fd_file(fd, ACT_BTF);
	}
	k->target |= UW_OPT_IN;
	inode = file ? kread(file + KOFF(struct file, f_inode), ACT_BTF) : 0;
	in->file = inode ? file : 0;
	in->fd = fd;
	if (!inode) {
		k->target |= UW_OPT_IN_BADF;
		return;
	}
	k->file_in_id = file_key_id(file, inode, kread(inode + KOFF(struct inode, i_ino), ACT_BTF));
}

/* "[io_uring]", the name io_uring gives its anon inode files, as two
 * little-endian reads: its first 8 bytes, and the last 2 with the NUL */
#define UW_RING_NAME_LEN 10
#define UW_RING_NAME0 0x6e6972755f6f695bULL     /* "[io_urin" */
#define UW_RING_NAME1 0x5d67ULL                 /* "g]" */

/* MSG_RING's target: the ring whose file its fd or slot names, by the id
 * every ring event gives it (ring_id_of its io_ring_ctx, the file's
 * private_data); none (file_in_id 0) when the file is not a ring's, which
 * the kernel refuses at issue (-EBADFD). A ring's file is told as the
 * kernel makes it: an anon inode file named "[io_uring]" (anon_inode_getfile
 * and its successors, with io_uring's f_op; no other file has that name on
 * that filesystem, and no caller can name one). The key carries it, so
 * counts and recordings have it with no state in user space. */
static __always_inline void op__ring(struct uw_op_key *k, __u64 file, __u64 inode)
{
	__u64 sb = kread(inode + KOFF(struct inode, i_sb), ACT_BTF);
	__u64 dentry = kread(file + KOFF(struct file, f_path.dentry), ACT_BTF);
	__u64 name = kread(dentry + KOFF(struct dentry, d_name.name), ACT_BTF);

	k->target |= UW_OPT_RING;
	if ((__u32)kread(sb + KOFF(struct super_block, s_magic), ACT_BTF) != ANON_INODE_FS_MAGIC ||
	    kread(dentry + KOFF(struct dentry, d_name.hash_len), ACT_BTF) >> 32 != UW_RING_NAME_LEN ||
	    kread(name, ACT_BTF) != UW_RING_NAME0 ||
	    (kread(name + 8, ACT_BTF) & 0xffffff) != UW_RING_NAME1)
		return;
	k->file_in_id = ring_id_of(kread(file + KOFF(struct file, private_data), ACT_BTF), 0);
}

/* The sends that may name where they go: SEND and SEND_ZC by addr2 and
 * addr_len (6.1+), SENDMSG and SENDMSG_ZC by their msghdr's msg_name. */
#define DEST_OPS (FILE_OP(SEND) | FILE_OP(SENDMSG) | FILE_OP(SEND_ZC) | FILE_OP(SENDMSG_ZC))

/* Before 6.10 prep keeps a send's address as the caller's pointer, and
 * copies it only at issue. */
struct io_sr_msg___v61 {
	__u16 addr_len;
	void *addr;
} __attribute__((preserve_access_index));

/* Where a send's sockaddr is and its length, as prep left the request
 * (r): its kernel copy in the async msghdr (6.10+: prep always sets one
 * up, msg_name its `addr` or NULL), else (before 6.10, no async data yet
 * at submission) the caller's pointers: SEND's addr2, SENDMSG's msghdr's
 * msg_name, read now as the kernel reads them at issue (UW_OPT_DEST_USER).
 * 0: the send names none, or this kernel's layout is not known. */
static __always_inline __u64 dest_src(__u64 r, __u32 op, __u32 *len, int *flags)
{
	__u64 async = act_u64(r, KOFF(struct io_kiocb, async_data)), um;
	__u64 hdr[2] = {};

	if (async) {
		*len = (__u32)kread(async + KOFF(struct io_async_msghdr, msg.msg_namelen), ACT_BTF);
		return kread(async + KOFF(struct io_async_msghdr, msg.msg_name), ACT_BTF);
	}
	if (!bpf_core_field_exists(struct io_sr_msg___v61, addr))
		return 0;
	*flags |= UW_OPT_DEST_USER;
	if (op == IORING_OP_SEND || op == IORING_OP_SEND_ZC) {
		*len = (__u16)act_u64(r, KOFF(struct io_sr_msg___v61, addr_len));
		return act_u64(r, KOFF(struct io_sr_msg___v61, addr));
	}
	/* struct user_msghdr: msg_name, then msg_namelen (a 64-bit caller's) */
	um = act_u64(r, ACT_FIELD(io_sr_msg, umsg));
	if (um && bpf_probe_read_user(hdr, sizeof(hdr), (void *)um))
		*flags |= UW_OPT_DEST_FAULT;
	*len = hdr[0] ? (__u32)hdr[1] : 0;
	return hdr[0];
}

/* A send's destination into op_in_file: its sockaddr, with the bytes the
 * kernel ignores zeroed (past the length; an inet address's sin_zero),
 * and a keyed id of those bytes, so each destination is a key of its own;
 * returns the target flags (0: the send names none). One global function:
 * verified once, its stack its own. */
__noinline int uw_op_dest(__u64 r, __u32 op)
{
	__u32 zero = 0, len = 0, keep_len, i, fam;
	struct op_in *in = bpf_map_lookup_elem(&op_in_file, &zero);
	int flags = UW_OPT_DEST;
	__u64 src, h, *w;

	if (!in)
		return 0;
	src = dest_src(r, op, &len, &flags);
	if (flags & UW_OPT_DEST_FAULT)
		return flags;
	if (!src)
		return 0;
	if (len > UW_DEST_MAX)
		len = UW_DEST_MAX;
	if (flags & UW_OPT_DEST_USER) {
		/* the mask on the register passed: 6.1's verifier loses a
		 * bound checked on a copy of it */
		if (len == UW_DEST_MAX) {
			if (bpf_probe_read_user(in->dest, UW_DEST_MAX, (void *)src))
				return flags | UW_OPT_DEST_FAULT;
		} else {
			keep(len);
			len &= UW_DEST_MAX - 1;
			if (bpf_probe_read_user(in->dest, len, (void *)src))
				return flags | UW_OPT_DEST_FAULT;
		}
	} else {
#pragma unroll
		for (i = 0; i < UW_DEST_MAX / 8; i++)     /* an inet address: 2 reads */
			*(__u64 *)&in->dest[i * 8] = i * 8 < len ? kread(src + i * 8, ACT_BTF) : 0;
	}
	fam = *(__u16 *)in->dest;
	keep_len = fam == UW_AF_INET ? 8 : fam == UW_AF_INET6 ? 28 : len;
	if (keep_len > len)
		keep_len = len;
	in->dest_len = keep_len;
	h = cfg.id_key[1] ^ keep_len;
#pragma unroll
	for (i = 0; i < UW_DEST_MAX / 8; i++) {
		w = (__u64 *)&in->dest[i * 8];
		if (i * 8 >= keep_len)
			*w = 0;
		else if (i * 8 + 8 > keep_len)      /* little-endian: the low bytes first */
			*w &= (1ULL << ((keep_len - i * 8) * 8)) - 1;
		h = mix64(h + *w);
	}
	in->dest_id = mix64(h ^ cfg.id_key[0]) | 1;
	return flags;
}

/* A send's destination in the key: its keyed id in file_in_id's place
 * (a send has no input), its sockaddr kept for op__ident. None for a
 * send denied at submission (UW_OP_DENIED): the ring's restrictions deny
 * it before prep, when the request still holds what an earlier request
 * left (before 6.10, that one's address pointer). */
static __always_inline void op__dest(struct uw_op_key *k, __u64 r, __u32 op)
{
	__u32 zero = 0;
	int flags = k->use.flags & UW_OP_DENIED ? 0 : uw_op_dest(r, op);
	struct op_in *in = bpf_map_lookup_elem(&op_in_file, &zero);

	if (!flags || !in)
		return;
	k->target |= flags;
	k->file_in_id = flags & UW_OPT_DEST_FAULT ? 0 : in->dest_id;
}

/* The target part of the key: the file the op's fd or fixed slot names
 * (op__file), and a URING_CMD's command; returns that file's address for
 * op__ident (0: none). Inputs: cfg.resolve, the key's opcode and
 * FIXED_FILE flag, req->cqe.fd, the fd table or the ring's file table at
 * it, the file's f_inode and its i_ino; for URING_CMD,
 * io_uring_cmd.cmd_op; for SPLICE and TEE, the same of their input; for
 * MSG_RING, the file's superblock magic, dentry name and private_data;
 * for a send, the bytes of the sockaddr it names (op__dest). */
static __always_inline __u64 op__target(struct uw_op_key *k, struct io_kiocb *req)
{
	__u32 op = k->use.opcode;
	__u64 r, file, inode;

	if (cfg.resolve != ACT_RESOLVE || op >= 64 || !(FILE_OPS >> op & 1))
		return 0;
	r = addr_of(req);
	if (op == IORING_OP_URING_CMD && bpf_core_field_exists(struct io_uring_cmd, cmd_op)) {
		k->cmd_op = (__u32)kread(r + KOFF(struct io_kiocb, cmd) +
					 KOFF(struct io_uring_cmd, cmd_op), ACT_BTF);
		k->target |= UW_OPT_CMD;
	}
	if (op == IORING_OP_SPLICE || op == IORING_OP_TEE)
		op__input(k, r);
	if (DEST_OPS >> op & 1)
		op__dest(k, r, op);
	file = op__file(k, req, r);
	if (!(k->target & UW_OPT_FD))
		return 0;
	inode = file ? kread(file + KOFF(struct file, f_inode), ACT_BTF) : 0;
	if (!inode) {
		k->target |= UW_OPT_BADF;
		return 0;
	}
	k->file_id = file_key_id(file, inode, kread(inode + KOFF(struct inode, i_ino), ACT_BTF));
	if (op == IORING_OP_MSG_RING)
		op__ring(k, file, inode);
	return file;
}

/* The first use of a key with a file: its identity into the op record
 * being built, from the very struct file its key's id was made of (0:
 * the fd or slot named none, BADF); `fd` the fd's number or the slot.
 * SPLICE's and TEE's input likewise, into file_in. */
static __always_inline void op__ident(struct uw_op *op, __u64 file, __s32 fd, __u32 target)
{
	__u32 zero = 0;
	struct op_in *in;

	if (target & UW_OPT_FD) {
		op->file.fd = fd;
		op->file.role = target & UW_OPT_SLOT ? UW_ROLE_SLOT : UW_ROLE_FD;
		if (ACT_BTF)
			uw_file_btf(UW_OP_SLOT, 0, file);
		else
			uw_file_pr(UW_OP_SLOT, 0, file);
	}
	in = bpf_map_lookup_elem(&op_in_file, &zero);
	if (!in)
		return;
	if ((target & (UW_OPT_DEST | UW_OPT_DEST_FAULT)) == UW_OPT_DEST) {
		op->file_in.fd = -1;
		op->file_in.flags = UW_FL_SOCK;
		op->file_in.family = *(__u16 *)in->dest;
		op->file_in.path_len = in->dest_len;
		__builtin_memcpy(op->file_in.path, in->dest, UW_DEST_MAX);
		return;
	}
	if (!(target & UW_OPT_IN))
		return;
	op->file_in.fd = in->fd;
	op->file_in.role = target & UW_OPT_IN_SLOT ? UW_ROLE_SLOT : UW_ROLE_FD;
	if (ACT_BTF)
		uw_file_btf(UW_OP_SLOT, 1, in->file);
	else
		uw_file_pr(UW_OP_SLOT, 1, in->file);
}

#endif
