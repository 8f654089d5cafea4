/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * io_uring register structs newer than the vendored vmlinux.h (6.18),
 * written from include/uapi/linux/io_uring/{zcrx,bpf_filter}.h as of the
 * kernels that added IORING_REGISTER_ZCRX_CTRL (36) and
 * IORING_REGISTER_BPF_FILTER (37). Plain uapi layouts: no CO-RE needed.
 */
#ifndef URINGWATCH_UAPI_NEWER_H
#define URINGWATCH_UAPI_NEWER_H

/* An enum, not defines, so that the object's BTF carries them beside the
 * kernel's enum io_uring_register_op (btf_anchors.h), where
 * tests/test_abi.py checks opcodes.NAMES against both. */
enum uw_register_newer {
	UW_REGISTER_ZCRX_CTRL = 36,
	UW_REGISTER_BPF_FILTER = 37,
};
/* Their numbers are the kernel's: right after the vendored header's last
 * opcode, or the same as a header that has them. */
#ifdef UW_VMLINUX_HAS_NEWER_UAPI
_Static_assert(UW_REGISTER_ZCRX_CTRL == IORING_REGISTER_ZCRX_CTRL &&
	       UW_REGISTER_BPF_FILTER == IORING_REGISTER_BPF_FILTER, "newer opcode numbers");
#else
_Static_assert(UW_REGISTER_ZCRX_CTRL == IORING_REGISTER_LAST, "newer opcode numbers");
#endif

/* A vmlinux.h from such a kernel (vmlinux/arm64/) has these already:
 * bpf/meson.build defines UW_VMLINUX_HAS_NEWER_UAPI when it does. */
#ifndef UW_VMLINUX_HAS_NEWER_UAPI
struct zcrx_ctrl {
	__u32 zcrx_id;
	__u32 op;           /* ZCRX_CTRL_FLUSH_RQ 0, ZCRX_CTRL_EXPORT 1 */
	__u64 __resv[2];
	union {
		struct {
			__u32 zcrx_fd;  /* out, EXPORT */
			__u32 __resv1[11];
		} zc_export;
		struct {
			__u64 __resv[6];
		} zc_flush;
	};
};

struct io_uring_bpf_filter {
	__u32 opcode;       /* the IORING_OP_* the filter applies to */
	__u32 flags;        /* DENY_REST 1, SZ_STRICT 2 */
	__u32 filter_len;   /* instructions at filter_ptr */
	__u8 pdu_size;      /* written back by the kernel */
	__u8 resv[3];
	__u64 filter_ptr;   /* struct sock_filter[filter_len] */
	__u64 resv2[5];
};

struct io_uring_bpf {
	__u16 cmd_type;     /* IO_URING_BPF_CMD_FILTER 1 */
	__u16 cmd_flags;
	__u32 resv;
	struct io_uring_bpf_filter filter;
};
#endif /* UW_VMLINUX_HAS_NEWER_UAPI */

#endif /* URINGWATCH_UAPI_NEWER_H */
