/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The reference tracer's record and counters, shared by both sides. */
#ifndef REFTRACER_H
#define REFTRACER_H

#define REF_SNAP 64           /* bytes captured at arg, as uringwatch's generic mode */

/* One io_uring_register call, sent at syscall exit. */
struct ref_event {
	__u64 ts_enter;
	__u64 ts_exit;
	__u64 arg;
	__s64 ret;
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u32 opcode;
	__u32 nr_args;
	__u32 fault;          /* the read at arg faulted: data is zeros */
	__u8 data[REF_SNAP];
};

/* The floor of what uringwatch promises (reftracer --floor=...): the
 * reference's record, then the ring as the kernel took it (hook), whether
 * the input changed by exit (reread), the caller's process and container
 * context (context) and bytes standing for identities (carry), 256 a file
 * (uw_file's size): the ring's and, for REGISTER_FILES, one per fd (16 at
 * most). A record is sent up to the end of the bytes it carries. */
#define REF_CARRY_ENTRY 256
#define REF_CARRY_MAX (16 * REF_CARRY_ENTRY)

struct ref_floor {
	struct ref_event e;
	__u64 ring;           /* io_uring_register's ctx, 0 without the hook */
	__u32 changed;        /* the REF_SNAP bytes differed at exit */
	__u32 carry_len;
	__u32 live;           /* a call is in flight: enter ran, exit not yet */
	__u32 pad;
	/* context: what uringwatch's record has of the caller */
	__u64 cgroup_id;
	__u32 uid, gid, ppid, pidns, mntns, nspid, nstid, ctx_pad;
	char comm[16];
	char hostname[72];    /* 65 of the kernel's, in 8-byte loads */
	__u8 carry[REF_CARRY_MAX];
};

/* Per-CPU counters by cause; every traced call ends in exactly one of
 * EMITTED, RING_FULL or NO_ENTER (STASH_FULL calls also end in NO_ENTER). */
enum ref_counter {
	REF_EMITTED,
	REF_RING_FULL,
	REF_NO_ENTER,         /* exit without a stashed enter */
	REF_STASH_FULL,       /* enter not stashed: hash full */
	REF_READ_FAULT,
	REF_CNT_MAX,
};

#endif /* REFTRACER_H */
