/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of every layout shared by the BPF object and Python.
 * Python's copies (python/uringwatch/layout.py) are checked against the BTF
 * of the built object by tests/test_abi.py.
 */
#ifndef URINGWATCH_H
#define URINGWATCH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bump when any record layout below changes. */
#define UW_ABI_VERSION 1

#define UW_COMM_LEN 16
#define UW_NREGION 4          /* head, array A, array B, exit copy */
#define UW_ARR_A_MAX 16384    /* 1024 x 16-byte elements */
#define UW_ARR_B_MAX 8192     /* 1024 x 8-byte tags */
#define UW_OUT_MAX 256        /* exit copy of a small in/out region */
#define UW_DATA_MAX (UW_HEAD_MAX + UW_ARR_A_MAX + UW_ARR_B_MAX + UW_OUT_MAX)
#define UW_MAX_CHANGED 16     /* changed spots listed per record */

/* Limits and the defaults user space starts from. An enum, not macros, so
 * that they are in the object's BTF (btf_anchors.h), where tests/test_abi.py
 * checks Python's copies (layout.py). */
enum uw_limits {
	UW_HEAD_MAX = 128,                  /* largest struct read at arg (io_uring_params: 120) */
	UW_CAP_MAX = 1024,                  /* largest settable element cap */
	UW_DEFAULT_CAP = 64,                /* elements captured per array region */
	UW_DEFAULT_SNAP_BYTES = 64,         /* generic capture of unknown opcodes */
	UW_DEFAULT_RING_BYTES = 8 << 20,    /* ring buffer */
	UW_DEFAULT_MAX_INFLIGHT = 256,      /* calls in flight at once (slots) */
	UW_DEFAULT_WAKEUP_BYTES = 256 << 10, /* wake the consumer once this much is queued */
};

enum uw_kind {
	UW_KIND_CALL = 1,
};

/* Common first bytes of every ring-buffer record. */
struct uw_rec_hdr {
	__u16 kind;
	__u16 abi;
	__u32 size;           /* whole record, header included */
};

/* uw_call.flags */
enum uw_call_flags {
	UW_F_PPID = 1 << 0,         /* ppid filled */
	UW_F_NS = 1 << 1,           /* pidns/mntns filled */
	UW_F_CHANGED = 1 << 2,      /* an input region differed at exit */
	UW_F_EXIT_FAULT = 1 << 3,   /* an input region was unreadable at exit */
	UW_F_CHANGED_MORE = 1 << 4, /* more changes than UW_MAX_CHANGED */
	UW_F_UNCOMPARED = 1 << 5,   /* inputs not re-read at exit (no bpf_loop) */
	UW_F_RAW = 1 << 6,          /* no plan: region 0 is the raw bytes at arg */
};

/* uw_region.flags */
enum uw_region_flags {
	UW_R_FAULT = 1 << 0,        /* unreadable when captured */
	UW_R_TRUNC = 1 << 1,        /* count exceeds what was captured */
	UW_R_OUT = 1 << 2,          /* captured at exit: the kernel's output */
	UW_R_CHANGED = 1 << 3,      /* differed between enter and exit */
	UW_R_EXIT_FAULT = 1 << 4,   /* unreadable at exit */
};

/* One user memory region captured for a call. Data follows the fixed part
 * of the record, regions packed in order, each `len` bytes. */
struct uw_region {
	__u64 addr;           /* user address read */
	__u32 count;          /* true element count */
	__u32 len;            /* bytes captured into the record */
	__u16 elem;           /* element size, 0 when unused */
	__u16 flags;          /* enum uw_region_flags */
	__u32 pad;
};

/* Emitted at syscall exit, one per io_uring_register call. */
struct uw_call {
	struct uw_rec_hdr hdr;
	__u64 ts_enter;       /* CLOCK_BOOTTIME ns */
	__u64 ts_exit;
	__u64 arg;
	__s64 ret;
	__u64 cgroup_id;
	__u32 pid;            /* tgid */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__s32 fd;
	__u32 opcode;         /* full 32 bits, IORING_REGISTER_USE_REGISTERED_RING kept */
	__u32 nr_args;
	__u32 pidns;
	__u32 mntns;
	__u32 flags;          /* enum uw_call_flags */
	__u32 nchanged;       /* entries used in changed[] */
	char comm[UW_COMM_LEN];
	struct uw_region region[UW_NREGION];
	__u32 changed[UW_MAX_CHANGED]; /* region << 24 | byte offset in region */
};

/* Drop and progress counters, one set per CPU. */
enum uw_counter {
	UW_CNT_EMITTED,       /* records submitted to the ring */
	UW_CNT_RING_FULL,     /* records lost: ring buffer full */
	UW_CNT_NO_EXIT,       /* enter overwritten: its exit never came */
	UW_CNT_NO_ENTER,      /* exit with no saved enter (started mid-call, or inflight full) */
	UW_CNT_INFLIGHT_FULL, /* enter not saved: inflight map full */
	UW_CNT_READ_FAULT,    /* user-memory reads that faulted */
	UW_CNT_FILTERED,      /* calls skipped by filters */
	UW_CNT_MAX,
};

struct uw_counters {
	__u64 n[UW_CNT_MAX];
};

/* Load-time knobs, the whole of .rodata.cfg. Filters are `targ_` with
 * sentinel defaults that mean "any". */
struct uw_config {
	__u32 abi;            /* UW_ABI_VERSION, read back by the loader */
	__u32 cap;            /* element cap per array region, <= UW_CAP_MAX */
	__u32 snap_bytes;     /* generic capture of unknown opcodes, <= UW_HEAD_MAX */
	__u32 use_task_btf;   /* read ppid/namespaces through BTF pointers */
	__u64 wakeup_bytes;   /* wake the consumer once this much is queued */
	__u32 generic;        /* capture snap_bytes raw for every opcode */
	__u32 targ_pids;      /* only tgids in the pids map */
	__u32 targ_cgroups;   /* only cgroup ids in the cgroups map */
	__u32 targ_uid;       /* (__u32)-1: any */
	__u32 targ_failed;    /* only calls that return an error */
	__u32 pad;
	__u64 targ_opcodes;   /* bit n: opcode n (n < 64); 0: any */
	char targ_comm[UW_COMM_LEN]; /* empty: any */
};

#endif /* URINGWATCH_H */
