/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of every layout shared by the BPF object and Python.
 * Python's view of it (python/uringwatch/record/_abi.py, read by layout.py)
 * is generated from the BTF of the built object by bpf/gen_abi.py.
 */
#ifndef URINGWATCH_H
#define URINGWATCH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Constants user space needs are enums, not macros: BTF keeps enums
 * (btf_anchors.h), and Python's view of this header is generated from the
 * object's BTF (bpf/gen_abi.py). */

/* Bump when any record layout below changes. ABI 1 (before identities) is
 * kept decodable by layout.CALL_ABI1 in python/uringwatch/record/layout.py, ABI 2
 * by uw_call, which the object still holds as a call's working state. */
enum uw_abi {
	UW_ABI_VERSION = 3,   /* 3: uw_call3, the parts a call has, then its data */
};

enum uw_sizes {
	UW_COMM_LEN = 16,
	UW_HOSTNAME_LEN = 64,   /* UTS nodename without its NUL (__NEW_UTS_LEN) */
	UW_NREGION = 4,         /* head, array A, array B, exit copy */
	UW_FILES_MAX = 64,      /* fds resolved per call */
	UW_MEMS_MAX = 16,       /* buffers resolved per call */
	UW_PATH_MAX = 176,      /* path bytes per resolved file */
	UW_MAX_CHANGED = 16,    /* changed spots listed per record */
	UW_PARAMS_LEN = 120,    /* struct io_uring_params */
};

#define UW_ARR_A_MAX 16384    /* 1024 x 16-byte elements */
#define UW_ARR_B_MAX 8192     /* 1024 x 8-byte tags */
#define UW_OUT_MAX 256        /* exit copy of a small in/out region */
#define UW_IDENT_MAX (UW_FILES_MAX * 256 + UW_MEMS_MAX * 312) /* sizes asserted below */
#define UW_DATA_MAX (UW_HEAD_MAX + UW_ARR_A_MAX + UW_ARR_B_MAX + UW_IDENT_MAX + UW_OUT_MAX)
/* key (this uid, cgroup 0): the overflow aggregate. A macro: an enumerator
 * must fit an int (C11 6.7.2.2), and this does not. */
#define UW_AGG_OVERFLOW_UID 0xffffffff

/* Limits and the defaults user space starts from. */
enum uw_limits {
	UW_HEAD_MAX = 128,                  /* largest struct read at arg (io_uring_params: 120) */
	UW_CAP_MAX = 1024,                  /* largest settable element cap */
	UW_DEFAULT_CAP = 64,                /* elements captured per array region */
	UW_DEFAULT_SNAP_BYTES = 64,         /* generic capture of unknown opcodes */
	UW_DEFAULT_RING_BYTES = 8 << 20,    /* ring buffer */
	UW_DEFAULT_MAX_INFLIGHT = 256,      /* calls in flight at once (slots) */
	UW_DEFAULT_WAKEUP_BYTES = 256 << 10, /* wake the consumer once this much is queued */
	/* without bpf_loop, fairness hashes a call of at most this many
	 * capture bytes and files (fairness.h); a larger one isn't coalesced */
	UW_SIG_UNROLLED = 256,
	UW_SIG_FILES_UNROLLED = 4,
	/* a QUERY chain as captured: up to this many entries, each the
	 * header and this many bytes of its data (the largest result) */
	UW_QUERY_MAX = 8,
	UW_QUERY_DATA = 48,
	/* aggregates with fairness state; past it, new ones share the
	 * overflow aggregate (UW_AGG_OVERFLOW_UID) */
	UW_DEFAULT_MAX_AGGS = 4096,
};

enum uw_kind {
	UW_KIND_CALL = 1,
	UW_KIND_REPEAT = 2,   /* a run of identical calls, coalesced (fairness.h) */
	UW_KIND_RING = 3,     /* a ring created: io_uring_setup */
	UW_KIND_OP = 4,       /* an operation a ring accepted, or a count of them */
	UW_KIND_REPEAT_END = 5, /* a uw_repeat sent as its process ended: its total restarts */
	UW_KIND_ACTION = 6,   /* one operation that opens or changes something: target, result */
	UW_KIND_RING_BEFORE = 7, /* a ring made before tracing (user space only, at start, for
				  * recordings): the header, then its ring_before event as JSON */
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

/* Identities: what the fds, credentials and buffers of a call referred to
 * as of the call. Resolved in the kernel while the call is in flight
 * (files and credentials at enter, buffers at exit), by one of enum
 * uw_resolve's paths. In the record, nfiles uw_file then nmem uw_mem
 * follow regions 0..2's data, before region 3's. */

/* uw_config.resolve and uw_ident.path: how identities are read */
enum uw_resolve {
	UW_RES_OFF = 0,        /* not at all: no entries */
	UW_RES_PROC = 1,       /* entries listed, left for user space (/proc) */
	UW_RES_PROBE_READ = 2, /* bpf_probe_read_kernel */
	UW_RES_BTF = 3,        /* BTF-typed loads through bpf_rdonly_cast */
};

/* uw_file.role: where in the call the fd came from */
enum uw_role {
	UW_ROLE_RING = 1,      /* the call's own ring fd */
	UW_ROLE_FDS = 2,       /* fds[index] of a files array */
	UW_ROLE_EVENTFD = 3,
	UW_ROLE_SRC_FD = 4,    /* CLONE_BUFFERS' source ring */
	UW_ROLE_FD = 5,        /* SYNC_CANCEL's fd */
	UW_ROLE_RING_FDS = 6,  /* RING_FDS entry index's fd */
	UW_ROLE_SQE_FD = 7,    /* SEND_MSG_RING's target ring */
	UW_ROLE_MEM = 8,       /* the file behind a buffer (in uw_mem) */
	UW_ROLE_SLOT = 9,      /* an op's fixed-file slot (fd: the slot), read from the ring's table */
};

/* uw_file.flags */
enum uw_file_flags {
	UW_FL_FOUND = 1 << 0,     /* the fd named an open file: fields below filled */
	UW_FL_BADF = 1 << 1,      /* no open file at this fd */
	UW_FL_UNRESOLVED = 1 << 2,/* not read in the kernel (resolve proc, or no path) */
	UW_FL_ROOTED = 1 << 3,    /* path walked up to the root mount: absolute */
	UW_FL_PSEUDO = 1 << 4,    /* no mount path: path is the pseudo file's name */
	UW_FL_PATH_TRUNC = 1 << 5,/* path longer than UW_PATH_MAX or deeper than walked */
	UW_FL_SOCK = 1 << 6,      /* socket fields filled */
	UW_FL_FAULT = 1 << 7,     /* a kernel read failed on the way */
	/* the check at exit (identity_check.h): one of the first three per fd */
	UW_FL_SAME_AT_EXIT = 1 << 8, /* the fd named this same open file at exit */
	UW_FL_KERNEL = 1 << 9,    /* the ring holds this file after the call (table, eventfd, ring) */
	UW_FL_RACED = 1 << 10,    /* the fd named another file at exit, or the ring holds another */
	UW_FL_AT_EXIT = 1 << 11,  /* not an fd of the call: the other identity of the raced entry
				   * with its role and index (KERNEL: the ring's; else the fd's at exit) */
};

struct uw_file {
	__s32 fd;
	__u16 role;           /* enum uw_role */
	__u16 index;          /* position in the array the fd came from */
	__u16 flags;          /* enum uw_file_flags */
	__u16 path_len;       /* bytes used in path */
	__u32 mode;           /* inode i_mode */
	__u64 ino;
	__u32 dev;            /* superblock s_dev, kernel encoding (major << 20 | minor) */
	__u32 magic;          /* superblock s_magic */
	__u16 family;         /* sockets: sk_family, sock type, sk_protocol */
	__u16 type;
	__u16 protocol;
	__u16 lport;          /* host order */
	__u16 rport;          /* host order */
	__u16 pad;
	__u32 pad2;
	__u8 laddr[16];       /* inet: 4 bytes, inet6: 16, network order */
	__u8 raddr[16];
	/* path components leaf first, each ending in NUL: "shadow\0etc\0" */
	char path[UW_PATH_MAX];
};

/* uw_mem.flags */
enum uw_mem_flags {
	UW_M_FOUND = 1 << 0,      /* a mapping holds addr: vm_* filled */
	UW_M_NOVMA = 1 << 1,      /* no mapping at addr */
	UW_M_UNRESOLVED = 1 << 2, /* not looked up in the kernel (no bpf_find_vma, or proc) */
	UW_M_FILE = 1 << 3,       /* file-backed: file filled */
	UW_M_BUSY = 1 << 4,       /* the mm was locked: not looked up */
	/* the check at exit (identity_check.h), REGISTER_BUFFERS* that succeeded */
	UW_M_KERNEL = 1 << 5,     /* the page the ring pinned at addr is this mapping's, same offset */
	UW_M_RACED = 1 << 6,      /* the ring pinned another buffer, or a page of another mapping */
};

struct uw_mem {
	__u64 addr;           /* the buffer as the caller gave it */
	__u64 len;
	__u64 vm_start;       /* the mapping holding addr */
	__u64 vm_end;
	__u64 vm_pgoff;       /* file offset of vm_start, in pages */
	__u64 vm_flags;
	__u32 flags;          /* enum uw_mem_flags */
	__u32 pad;
	struct uw_file file;  /* the mapping's file, role UW_ROLE_MEM */
};

/* uw_ident.flags */
enum uw_ident_flags {
	UW_I_FILES_TRUNC = 1 << 0, /* more fds than UW_FILES_MAX (or than captured) */
	UW_I_MEMS_TRUNC = 1 << 1,  /* more buffers than UW_MEMS_MAX (or than captured) */
	UW_I_CRED = 1 << 2,        /* cred filled (REGISTER_PERSONALITY) */
	UW_I_CHECKED = 1 << 3,     /* files compared at exit (older records: never) */
	UW_I_MEM_CHECKED = 1 << 4, /* buffers compared at exit (older records: never) */
	UW_I_PBUF_MAPPED = 1 << 5, /* UNREGISTER_PBUF_RING left its ring mapped (pbuf.h) */
	UW_I_PBUF_KEPT = 1 << 6,   /* a ring unregistered before is still mapped (pbuf.h) */
};

/* Credentials of the caller, as REGISTER_PERSONALITY saves them. */
struct uw_cred {
	__u32 uid, euid, suid, fsuid;
	__u32 gid, egid, sgid, fsgid;
	__u32 ngroups;
	__u32 pad;
	__u64 cap_effective;
	__u64 cap_permitted;
};

struct uw_ident {
	__u16 nfiles;         /* uw_file entries in the record */
	__u16 nmem;           /* uw_mem entries in the record */
	__u16 flags;          /* enum uw_ident_flags */
	__u8 path;            /* enum uw_resolve used */
	__u8 pad;
	struct uw_cred cred;
};

/* The ring a register call acted on, and for REGISTER_PERSONALITY the
 * credentials it saved (the caller's), as ids operations are joined by. */
struct uw_ring_ref {
	__u64 ring_id;        /* 0: the call found no ring */
	__u64 cred_id;
};

/* uw_ns_ctx.flags */
enum uw_ns_flags {
	UW_NS_IDS = 1 << 0,         /* nspid/nstid filled */
	UW_NS_UTS = 1 << 1,         /* hostname filled */
};

/* The caller as its own namespaces see it: pid and tid in its pid
 * namespace, and its UTS nodename (a container's hostname). */
struct uw_ns_ctx {
	__u32 nspid;
	__u32 nstid;
	__u32 flags;          /* enum uw_ns_flags */
	__u32 pad;
	char hostname[UW_HOSTNAME_LEN];
};

/* ABI 1 and 2: emitted at syscall exit, one per io_uring_register call. */
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
	struct uw_ident ident;         /* ABI 2 */
	struct uw_ring_ref ring;
	struct uw_ns_ctx ns;
};

/* ABI 2's record, and in every ABI the state of a call in flight (its
 * slot, maps.h). Since ABI 3 a call is sent as uw_call3 and its parts;
 * the state leaves ppid, pidns, mntns and ns unset: the caller's context
 * is read at exit straight into the record (bpf/record.h). */

/* uw_call3.parts: which of these follow the regions and changed[], in
 * this order */
enum uw_part {
	UW_P_TASK = 1 << 0,   /* struct uw_task (uw_call.flags PPID, NS: which of it) */
	UW_P_NS = 1 << 1,     /* struct uw_ns_ctx */
	UW_P_CRED = 1 << 2,   /* struct uw_cred (uw_ident flag CRED) */
	UW_P_RING = 1 << 3,   /* struct uw_ring_ref (the call found its ring) */
};

struct uw_task {
	__u32 ppid;
	__u32 pidns;
	__u32 mntns;
	__u32 pad;
};

/* ABI 3: a register call's record. This fixed part, what every call has;
 * then a uw_region for each bit of `regions`, in index order; nchanged
 * changed[] entries, padded to 8 bytes; the parts `parts` names (enum
 * uw_part, in its order); then data_len bytes of data, as in ABI 2:
 * regions 0..2, nfiles uw_file and nmem uw_mem, region 3. A field of
 * uw_call not here is zero (its flag unset), as ABI 2 sent it. */
struct uw_call3 {
	struct uw_rec_hdr hdr;
	__u64 ts_enter;       /* CLOCK_BOOTTIME ns */
	__u64 ts_exit;
	__u64 arg;
	__s64 ret;
	__u64 cgroup_id;
	__u32 pid;            /* tgid */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__s32 fd;
	__u32 opcode;         /* full 32 bits, IORING_REGISTER_USE_REGISTERED_RING kept */
	__u32 nr_args;
	__u32 flags;          /* enum uw_call_flags */
	__u32 data_len;       /* bytes of data, after head_len */
	__u16 head_len;       /* this fixed part, the regions, changed[] and the parts */
	__u8 regions;         /* bit i: region i's uw_region follows */
	__u8 nchanged;        /* changed[] entries that follow (<= UW_MAX_CHANGED) */
	__u16 nfiles;         /* uw_ident's: entries in the data, and its flags */
	__u16 nmem;
	__u16 ident_flags;
	__u8 path;            /* enum uw_resolve used */
	__u8 parts;           /* enum uw_part */
	char comm[UW_COMM_LEN];
};

#define UW_CALL3_MAX (sizeof(struct uw_call3) + UW_NREGION * sizeof(struct uw_region) + \
		      UW_MAX_CHANGED * 4 + sizeof(struct uw_task) + sizeof(struct uw_ns_ctx) + \
		      sizeof(struct uw_cred) + sizeof(struct uw_ring_ref))

_Static_assert(sizeof(struct uw_call3) == 112, "uw_call3: python/uringwatch/record/layout.py");
_Static_assert(sizeof(struct uw_file) == 256, "UW_IDENT_MAX assumes 256-byte uw_file");
_Static_assert(sizeof(struct uw_mem) == 312, "UW_IDENT_MAX assumes 312-byte uw_mem");

/* Emitted at io_uring_setup's exit. */
struct uw_ring {
	struct uw_rec_hdr hdr;
	__u64 ts_enter;       /* CLOCK_BOOTTIME ns */
	__u64 ts_exit;
	__u64 ring_id;        /* keyed hash of the ring; 0: no ring was made */
	__s64 ret;            /* the ring's fd, or -errno */
	__u64 cgroup_id;
	__u64 params_addr;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 entries;
	__u32 flags;          /* enum uw_call_flags: PPID; EXIT_FAULT: params unreadable */
	__u32 pad;
	char comm[UW_COMM_LEN];
	__u8 params[UW_PARAMS_LEN]; /* io_uring_params as the kernel left it */
};

/* uw_use_key.flags */
enum uw_op_flags {
	UW_OP_FIXED_FILE = 1 << 0,   /* file_slot: a registered-file index */
	UW_OP_FIXED_BUF = 1 << 1,    /* buf: a registered-buffer index */
	UW_OP_BUF_SELECT = 1 << 2,   /* buf: a provided-buffer group */
	UW_OP_CREDS = 1 << 3,        /* ran under a registered personality */
	UW_OP_CREDS_DIFFER = 1 << 4, /* ran with creds other than its owner's current ones */
	UW_OP_SQ_THREAD = 1 << 5,    /* submitted by a kernel io thread (SQPOLL) */
	UW_OP_SPILLED = 1 << 6,      /* counted by process, ring and opcode alone (rings.h) */
	UW_OP_DENIED = 1 << 7,       /* refused at submission with -EACCES: a BPF filter or
				      * the ring's restrictions (io_uring_req_failed) */
};

/* uw_op.reason */
enum uw_op_reason {
	UW_OP_FIRST = 1,      /* first use of its key */
	UW_OP_EACH = 2,       /* one operation (every operation reported) */
	UW_OP_COUNT = 3,      /* uses of its key since the last count (user space) */
};

/* What an operation used, and who submitted it: the key of the in-kernel
 * summary of uses. */
struct uw_use_key {
	__u64 ring_id;
	__u64 cred_id;        /* keyed hash of the personality's creds; 0: none */
	__s32 file_slot;      /* -1: none */
	__s32 buf;            /* -1: none */
	__u32 euid;           /* the submitter's */
	__u32 pid;            /* the submitter's tgid */
	__u8 opcode;          /* IORING_OP_* */
	__u8 flags;           /* enum uw_op_flags */
	__u16 pad;
	__u32 uid;            /* the submitter's */
};

/* The key of the summary of uses (rings.h `uses`, `spills`): what an
 * operation used and who submitted it, and what its plain fd named at
 * submission. */
struct uw_op_key {
	struct uw_use_key use;
	__u64 file_id;        /* keyed id of the open file (its struct file, inode and
			       * inode number) the fd or fixed slot named; 0: none (no
			       * file, an fd or slot that named none, no kernel reads) */
	__u32 cmd_op;         /* URING_CMD's command */
	__u32 target;         /* enum uw_op_target */
	__u64 file_in_id;     /* SPLICE/TEE: the keyed id of the file they read from
			       * (splice_fd_in, or its fixed slot); MSG_RING
			       * (UW_OPT_RING): the id of the ring it targets; a send
			       * with UW_OPT_DEST: the keyed id of its destination;
			       * 0: none */
};

/* uw_op_key.target */
enum uw_op_target {
	UW_OPT_FD = 1 << 0,      /* the op's fd was looked up: file_id, or BADF */
	UW_OPT_BADF = 1 << 1,    /* it named no open file at submission */
	UW_OPT_CMD = 1 << 2,     /* cmd_op filled */
	UW_OPT_SLOT = 1 << 3,    /* with FD: the fd is a fixed-file slot, looked up in the
				  * ring's table (BADF: an empty slot) */
	UW_OPT_IN = 1 << 4,      /* SPLICE/TEE's input was looked up: file_in_id, or IN_BADF */
	UW_OPT_IN_BADF = 1 << 5, /* it named no open file at submission */
	UW_OPT_IN_SLOT = 1 << 6, /* the input is a fixed slot (SPLICE_F_FD_IN_FIXED) */
	UW_OPT_RING = 1 << 7,    /* MSG_RING's file was checked for a ring: file_in_id its
				  * ring id, 0 if the file is not a ring's */
	UW_OPT_DEST = 1 << 8,    /* a send names its destination: file_in_id its keyed id,
				  * file_in.path its sockaddr (bpf/opfile.h, op__dest) */
	UW_OPT_DEST_USER = 1 << 9,  /* read from the caller's memory at submission (before
				     * 6.10 the kernel copies it only at issue) */
	UW_OPT_DEST_FAULT = 1 << 10, /* that memory was unreadable: file_in_id 0 */
};

struct uw_use {
	__u64 count;
	__u64 first_ts;
	__u64 last_ts;
	__u64 cgroup_id;      /* first user's */
	__u32 pid;            /* first user */
	__u32 tid;
	char comm[UW_COMM_LEN];
};

/* The uses of one key a CPU counted and has not yet added to `uses`
 * (bpf/opcache.h): the key of the last operation counted on that CPU, and
 * its value as `uses` had it then, with use.count the uses since and
 * use.last_ts the last one's. User space adds them to the map's counts. */
struct uw_use_pending {
	struct uw_op_key key;
	struct uw_use use;
};

/* An operation's use of a ring: at first use of its key, for every
 * operation with ops_all, or a count built by user space from the map. */
struct uw_op {
	struct uw_rec_hdr hdr;
	struct uw_use_key key;
	__u64 ts;             /* this use; for a count, the last one */
	__u64 first_ts;
	__u64 count;
	__u64 cgroup_id;
	__u64 cap_effective;  /* the submitter's */
	__u64 cred_cap_effective; /* the personality's */
	__u32 pid;
	__u32 tid;
	__u32 creator_pid;    /* the ring's creator; 0: made before tracing began */
	__u32 cred_uid;       /* the personality's */
	__u32 cred_euid;
	__u32 reason;         /* enum uw_op_reason */
	char comm[UW_COMM_LEN];
	/* Appended: a record whose key has no target (uw_op_key.target 0)
	 * ends here (UW_OP_SHORT bytes), as every record did before. */
	__u64 file_id;        /* uw_op_key's */
	__u32 cmd_op;
	__u32 target;         /* enum uw_op_target */
	struct uw_file file;  /* the fd's file, role UW_ROLE_FD (a fixed slot's: UW_ROLE_SLOT),
			       * read at submission in a first use; flags 0 in counts and
			       * other records */
	/* Appended: a record whose key has no input (uw_op_key.target
	 * without UW_OPT_IN, UW_OPT_RING or UW_OPT_DEST) ends here (UW_OP_TARGET
	 * bytes). */
	__u64 file_in_id;     /* uw_op_key's */
	struct uw_file file_in; /* SPLICE/TEE's input, as `file`; flags 0 for MSG_RING;
				 * a send's destination (UW_OPT_DEST, first use: flags
				 * UW_FL_SOCK): family, and in path its sockaddr's
				 * path_len bytes as the kernel took them (bytes it
				 * ignores zeroed) */
};

#define UW_OP_SHORT __builtin_offsetof(struct uw_op, file_id)
#define UW_OP_TARGET __builtin_offsetof(struct uw_op, file_in_id)
_Static_assert(sizeof(struct uw_op) == 672, "uw_op: python/uringwatch/record/layout.py");
_Static_assert(UW_OP_TARGET == 408, "uw_op: python/uringwatch/record/layout.py");

/* uw_action.flags */
enum uw_action_flags {
	UW_ACT_DONE = 1 << 0,        /* res and ts_done filled: its completion was seen */
	UW_ACT_UNSEEN = 1 << 1,      /* its request was submitted again first: completion not seen */
	UW_ACT_UNJOINED = 1 << 2,    /* sent at submission, no result: `pending` was full */
	UW_ACT_NO_TARGET = 1 << 3,   /* target not read (no kernel reads, or no layout for it) */
	UW_ACT_PATH_TRUNC = 1 << 4,  /* path longer than UW_ACT_PATH */
	UW_ACT_PATH2_TRUNC = 1 << 5,
	UW_ACT_ADDR_USER = 1 << 6,   /* address read from the caller's memory at submission
				      * (before 6.10 the kernel copies it only at issue) */
	UW_ACT_FAULT = 1 << 7,       /* a target's memory was unreadable */
	UW_ACT_AT_STOP = 1 << 8,     /* read from `pending` at stop: completion not seen (user space) */
	UW_ACT_FILE = 1 << 9,        /* `file` holds the identity of the file the op names by fd:
				      * the directory of a relative path (dfd), an FSETXATTR's or
				      * FGETXATTR's file, an ACCEPT's listening socket */
	UW_ACT_REFUSED = 1 << 10,    /* refused at prep (io_uring_req_failed): res its errno,
				      * target from the SQE and the caller's memory */
	UW_ACT_REPEATS = 1 << 11,    /* stands for `count` repeats of the action sent before it */
	UW_ACT_OPENED = 1 << 12,     /* with UW_ACT_FILE: `file` is the file an OPENAT/OPENAT2
				      * opened (its new fd's, at completion), not its dfd; or
				      * the file an OPENAT/OPENAT2/ACCEPT/SOCKET put in a fixed
				      * slot (the ring's table at that slot, at completion) */
};

enum uw_action_limits {
	UW_ACT_PATH = 256,           /* bytes per path, NUL included */
	UW_ACT_ADDR = 112,           /* sockaddr bytes: sockaddr_un and smaller */
};

/* One operation that opens, creates, connects, binds, unlinks, renames or
 * links (bpf/targets.h): what it names, read from the request as the
 * kernel prepared it at submission, and its completion's result. Which
 * arg, dfd and path mean what depends on the opcode (python/uringwatch/
 * record/targets.py): OPENAT/OPENAT2 open_how flags, mode, resolve; SOCKET
 * domain, type, protocol; RENAMEAT/LINKAT path -> path2, dfd -> dfd2. */
struct uw_action {
	struct uw_rec_hdr hdr;
	struct uw_use_key key;
	__u64 ts;             /* submission, CLOCK_BOOTTIME ns */
	__u64 ts_done;        /* completion; 0: not seen */
	__u64 cgroup_id;
	__u64 user_data;      /* the SQE's */
	__s64 res;            /* the completion's: an fd, a fixed slot, 0, or -errno */
	__u64 arg[3];
	__s32 dfd;            /* the directory paths are relative to (AT_FDCWD: -100) */
	__s32 dfd2;
	__u32 file_slot;      /* open/socket into the fixed table: slot + 1, ~0: any; 0: none */
	__u32 addr_len;       /* as the caller gave it */
	__u32 pid;
	__u32 tid;
	__u32 creator_pid;    /* the ring's creator; 0: made before tracing began */
	__u32 flags;          /* enum uw_action_flags */
	char comm[UW_COMM_LEN];
	__u8 addr[UW_ACT_ADDR];
	char path[UW_ACT_PATH];
	char path2[UW_ACT_PATH];  /* xattr ops: the attribute's name */
	__u64 count;          /* actions it stands for: 1, or with UW_ACT_REPEATS the repeats */
	struct uw_file file;  /* with UW_ACT_FILE */
};

_Static_assert(sizeof(struct uw_action) == 1048, "uw_action: python/uringwatch/record/layout.py");

/* A process's run of identical actions (bpf/targets.h `act_runs`, by
 * pid): the one it sent, and the repeats folded since, which go as a copy
 * of it with UW_ACT_REPEATS and `count` when the run ends (a different
 * action, UW_ACT_RUN_NS after the run began, the process's leader ending),
 * or are read from the map at stop. */
struct uw_act_run {
	__u64 sig;            /* keyed signature of what makes actions identical */
	__u64 shown_ts;       /* when the run's action was sent */
	__u64 count;          /* repeats folded, not sent yet */
	__u64 first_ts;       /* completion of the first and last repeat */
	__u64 last_ts;
	struct uw_action rec; /* the run's action, as sent */
};

#define UW_ACT_RUN_NS 1000000000ULL  /* a run folds repeats for 1 s from its action */

/* Sent before a process's next distinct call when identical repeats of its
 * last sent call were coalesced (bpf/fairness.h). `coalesced` is the
 * process's running total over all its runs, never reset: user space turns
 * it into this run's count, so a summary lost to a full ring loses nothing
 * (its count joins the next one, or is read from the map at stop). */
struct uw_repeat {
	struct uw_rec_hdr hdr;
	__u64 first_ts;       /* CLOCK_BOOTTIME ns, enter of the first repeat */
	__u64 last_ts;        /* enter of the last repeat */
	__u64 coalesced;      /* the process's calls coalesced so far, all runs */
	__s64 ret;            /* of the call repeated */
	__u32 pid;            /* tgid */
	__u32 tid;            /* the thread that made the call repeated */
	__s32 fd;
	__u32 opcode;
	char comm[UW_COMM_LEN];
};

/* Per-process drop causes, uw_proc.drops[] */
enum uw_drop {
	UW_DROP_BUDGET,         /* over the process's record budget */
	UW_DROP_RING_FULL,      /* ring buffer full */
	UW_DROP_INFLIGHT_FULL,  /* no slot at enter */
	UW_DROP_RESERVE,        /* ring past the budgets' line, and not let pass */
	UW_DROP_MAX,
};

/* Records other than calls that pass fairness (fairness.h, fair__emit):
 * bit n of uw_proc.firsts, index n of rec_drops[]. */
enum uw_rec {
	UW_REC_RING,            /* a ring created (uw_ring) */
	UW_REC_OP,              /* an operation (uw_op) */
	UW_REC_ACTION,          /* an action (uw_action) */
	UW_REC_MAX,
};

/* What processes share a budget by: their uid and cgroup (bpf/fairness.h),
 * the key of the aggs map. */
struct uw_agg_key {
	__u64 cgroup_id;
	__u32 uid;
	__u32 pad;
};

/* A token bucket: ns of refill banked, and when it was last refilled. */
struct uw_bucket {
	__u64 credit;
	__u64 ts;
};

/* One process's fairness state, the value of the procs map (keyed by
 * tgid); freed when the process ends, its counts added to its aggregate's.
 * Counts only grow; user space reads them at stop. */
struct uw_proc {
	__u64 sig;            /* signature of the last call sent; 0: none */
	__u64 coalesced;      /* calls coalesced, all runs */
	__u64 run_first;      /* current run of repeats: first enter; 0: none */
	__u64 run_last;
	__u64 credit;         /* budget: ns of refill banked, <= burst */
	__u64 credit_ts;      /* when credit was last refilled */
	struct uw_bucket light; /* the light sender's allowance (fairness.h) */
	struct uw_agg_key agg;  /* its aggregate, as of its first call */
	__u64 opcodes;        /* bit n: opcode n sent (bit 63: 63 and above) */
	__u64 drops[UW_DROP_MAX];
	__u64 rec_drops[UW_REC_MAX]; /* ring and op records not sent, any cause */
	__s64 ret;            /* of the last call sent */
	__u32 tid;
	__s32 fd;
	__u32 opcode;
	__u32 firsts;         /* bit n: a record of enum uw_rec n sent */
	char comm[UW_COMM_LEN];
};

/* One aggregate's state, the value of the aggs map: its budget, which
 * every process under it spends too, and the counts of its processes that
 * ended or had no state of their own (procs map full). */
struct uw_agg {
	struct uw_bucket budget;
	__u64 coalesced;      /* of its ended processes, all reported */
	__u64 drops[UW_DROP_MAX];
	__u64 rec_drops[UW_REC_MAX];
	__u64 ended;          /* processes whose state was folded in here */
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
	UW_CNT_COALESCED,     /* calls folded into a repeat run (not lost) */
	UW_CNT_BUDGET,        /* calls dropped: over their process's budget */
	UW_CNT_PROCS_FULL,    /* calls sent without fairness: procs map full */
	UW_CNT_REPEATS,       /* repeat summary records sent */
	UW_CNT_OPS_UNTRACKED, /* operations not counted by key: uses map full */
	UW_CNT_RESERVE,       /* calls dropped: ring past the budgets' line, not let pass */
	UW_CNT_LIGHT,         /* calls sent past a spent budget by a light sender */
	UW_CNT_AGGS_FULL,     /* calls held to the shared overflow aggregate: aggs map full */
	UW_CNT_PROCS_ENDED,   /* processes whose state was freed as they ended */
	UW_CNT_ACTIONS_LOST,  /* action records not sent (fairness, ring full): bpf/targets.h */
	UW_CNT_RECS_HELD,     /* ring and op records not let pass by fairness */
	UW_CNT_FREES_LOST,    /* rings freed not told to user space: queue full */
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
	__u32 resolve;        /* enum uw_resolve */
	__u64 targ_opcodes;   /* bit n: opcode n (n < 64); 0: any */
	char targ_comm[UW_COMM_LEN]; /* empty: any */
	__u64 id_key[2];      /* keys ring and credential ids, random per run */
	__u64 fair_key;       /* random per run: keys the call signatures */
	__u64 fair_cost_ns;   /* budget: ns of refill one record costs; 0: none */
	__u64 fair_burst_ns;  /* budget: most refill a process can bank */
	__u32 ops_all;        /* a record for every operation, not first uses */
	__u32 fair;           /* coalescing and budgets on */
	__u32 req_creds_bit;  /* REQ_F_CREDS_BIT of this kernel; >= 64: unknown */
	__u32 pad2;
	__u64 fair_agg_cost_ns;    /* an aggregate's budget, as the process's above */
	__u64 fair_agg_burst_ns;
	__u64 fair_light_cost_ns;  /* a process's light allowance, as above */
	__u64 fair_light_burst_ns;
	__u64 fair_budget_bytes;   /* ring fill past which budgets let nothing pass */
	__u64 fair_reserve_bytes;  /* ... and past which only light senders pass */
};

/* One io_uring-looking file of a task, from the iterator over every
 * task's files (rings_before.h), run once at start: how user space finds
 * the rings made before tracing, under the ids their operations will
 * carry. Read from the iterator's fd, never through the ring buffer. */
enum uw_ring_fd_flags {
	UW_RFD_MADE = 1 << 0,  /* made while tracing: its ring event came already */
};

struct uw_ring_fd {
	__u64 ring_id;        /* as every event names this ring (rings.h) */
	__u64 fops_id;        /* keyed mix of file->f_op: which kind of anon file */
	__u32 pid;            /* tgid */
	__s32 fd;
	__u32 flags;          /* enum uw_ring_fd_flags */
	__u32 pad;
};

#endif /* URINGWATCH_H */
