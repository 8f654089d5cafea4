/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Rings made before tracing began: an iterator over every task's open
 * files, run once at start, lists each anon-inode file with its task, fd,
 * the kind of file it is (a keyed mix of its f_op) and, were it a ring,
 * the ring's id, computed as every event computes it (rings.h). User
 * space keeps the files whose f_op is an io_uring file's (its own ring's
 * tells which) and reads what each ring has registered from
 * /proc/PID/fdinfo/FD. Part of uringwatch.bpf.c; included there only.
 */
#ifndef URINGWATCH_RINGS_BEFORE_H
#define URINGWATCH_RINGS_BEFORE_H

#define ANON_INODE_FS_MAGIC 0x09041934   /* include/uapi/linux/magic.h */

/* Threads sharing their leader's file table are skipped by the kernel's
 * iterator already; an io thread (SQPOLL, io-wq) shares its process's. */
static __always_inline int ring_fd__list(struct seq_file *seq, struct task_struct *task,
					 __u32 fd, struct file *file)
{
	struct uw_ring_fd r = {};
	struct ring_state *state;

	if (!seq || !task || !file)
		return 0;
	if (file->f_inode->i_sb->s_magic != ANON_INODE_FS_MAGIC)
		return 0;
	r.ring_id = ring_id_of(addr_of(file->private_data), &state);
	r.fops_id = id_of_ptr(file->f_op);
	r.pid = task->tgid;
	r.fd = fd;
	r.flags = state ? UW_RFD_MADE : 0;
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

#endif
