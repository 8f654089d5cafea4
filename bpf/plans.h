/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Capture plans: for each IORING_REGISTER_* opcode, which user memory the
 * kernel reads (or writes) through `arg`, so the BPF side can copy the same.
 * Sizes and offsets come from the uapi structs in vmlinux.h.
 */
#ifndef URINGWATCH_PLANS_H
#define URINGWATCH_PLANS_H

/* uw_plan_region.ptr: where the region's user address comes from */
#define P_NONE 0
#define P_ARG 1                  /* arg itself */
#define P_ARG_END 2              /* arg + head size (flexible array) */
#define P_FIELD(off) (0x80 | (off)) /* __u64 at `off` in the head */
/* uw_plan_region.cnt: where its element count comes from */
#define C_NR_ARGS 0
#define C_ONE 1
#define C_FIELD(off) (0x80 | (off)) /* __u32 at `off` in the head */
#define C_CHAIN 2                /* QUERY's header chain, walked at exit */

/* A QUERY chain entry as captured: the header, then UW_QUERY_DATA bytes. */
#define UW_QUERY_ENTRY (sizeof(struct io_uring_query_hdr) + UW_QUERY_DATA)

/* direction: IN is compared at exit for TOCTOU; OUT is captured at exit
 * only; INOUT keeps the enter copy and adds an exit copy. */
#define D_IN 0
#define D_OUT 1
#define D_INOUT 2

struct uw_plan_region {
	__u8 ptr;
	__u8 cnt;
	__u8 elem;
	__u8 dir;
};

struct uw_plan {
	__u8 known;             /* 0: capture snap_bytes raw */
	__u8 head;              /* bytes of the struct at arg */
	__u8 head_dir;
	__u8 pad;
	struct uw_plan_region reg[2];
};

#define OFF(s, f) __builtin_offsetof(struct s, f)
#define HEAD(s, dir) .known = 1, .head = sizeof(struct s), .head_dir = (dir)
#define NOARG .known = 1
#define ARR(p, c, e, d) { .ptr = (p), .cnt = (c), .elem = (e), .dir = (d) }

/* io_uring_rsrc_register / _update2 carry data[] and tags[] of length nr */
#define RSRC_REG(elem_size) HEAD(io_uring_rsrc_register, D_IN), .reg = { \
	ARR(P_FIELD(OFF(io_uring_rsrc_register, data)), \
	    C_FIELD(OFF(io_uring_rsrc_register, nr)), elem_size, D_IN), \
	ARR(P_FIELD(OFF(io_uring_rsrc_register, tags)), \
	    C_FIELD(OFF(io_uring_rsrc_register, nr)), 8, D_IN) }
#define RSRC_UPD2(elem_size) HEAD(io_uring_rsrc_update2, D_IN), .reg = { \
	ARR(P_FIELD(OFF(io_uring_rsrc_update2, data)), \
	    C_FIELD(OFF(io_uring_rsrc_update2, nr)), elem_size, D_IN), \
	ARR(P_FIELD(OFF(io_uring_rsrc_update2, tags)), \
	    C_FIELD(OFF(io_uring_rsrc_update2, nr)), 8, D_IN) }

#define UW_NPLANS 40

/* tests/test_abi.py reads this table from the object: a plan (.known) for
 * each opcode in opcodes.NAMES, and for no other. */
static const struct uw_plan plans[UW_NPLANS] = {
	[IORING_REGISTER_BUFFERS] = { NOARG, .reg = {
		ARR(P_ARG, C_NR_ARGS, sizeof(struct iovec), D_IN) } },
	[IORING_UNREGISTER_BUFFERS] = { NOARG },
	[IORING_REGISTER_FILES] = { NOARG, .reg = {
		ARR(P_ARG, C_NR_ARGS, 4, D_IN) } },
	[IORING_UNREGISTER_FILES] = { NOARG },
	[IORING_REGISTER_EVENTFD] = { .known = 1, .head = 4 },
	[IORING_UNREGISTER_EVENTFD] = { NOARG },
	[IORING_REGISTER_FILES_UPDATE] = { HEAD(io_uring_rsrc_update, D_IN), .reg = {
		ARR(P_FIELD(OFF(io_uring_rsrc_update, data)), C_NR_ARGS, 4, D_IN) } },
	[IORING_REGISTER_EVENTFD_ASYNC] = { .known = 1, .head = 4 },
	[IORING_REGISTER_PROBE] = { HEAD(io_uring_probe, D_OUT), .reg = {
		ARR(P_ARG_END, C_NR_ARGS, sizeof(struct io_uring_probe_op), D_OUT) } },
	[IORING_REGISTER_PERSONALITY] = { NOARG },
	[IORING_UNREGISTER_PERSONALITY] = { NOARG },
	[IORING_REGISTER_RESTRICTIONS] = { NOARG, .reg = {
		ARR(P_ARG, C_NR_ARGS, sizeof(struct io_uring_restriction), D_IN) } },
	[IORING_REGISTER_ENABLE_RINGS] = { NOARG },
	[IORING_REGISTER_FILES2] = { RSRC_REG(4) },
	[IORING_REGISTER_FILES_UPDATE2] = { RSRC_UPD2(4) },
	[IORING_REGISTER_BUFFERS2] = { RSRC_REG(sizeof(struct iovec)) },
	[IORING_REGISTER_BUFFERS_UPDATE] = { RSRC_UPD2(sizeof(struct iovec)) },
	[IORING_REGISTER_IOWQ_AFF] = { NOARG, .reg = {
		ARR(P_ARG, C_NR_ARGS, 1, D_IN) } },
	[IORING_UNREGISTER_IOWQ_AFF] = { NOARG },
	[IORING_REGISTER_IOWQ_MAX_WORKERS] = { .known = 1, .head = 8, .head_dir = D_INOUT },
	[IORING_REGISTER_RING_FDS] = { NOARG, .reg = {
		ARR(P_ARG, C_NR_ARGS, sizeof(struct io_uring_rsrc_update), D_INOUT) } },
	[IORING_UNREGISTER_RING_FDS] = { NOARG, .reg = {
		ARR(P_ARG, C_NR_ARGS, sizeof(struct io_uring_rsrc_update), D_IN) } },
	[IORING_REGISTER_PBUF_RING] = { HEAD(io_uring_buf_reg, D_IN) },
	[IORING_UNREGISTER_PBUF_RING] = { HEAD(io_uring_buf_reg, D_IN) },
	[IORING_REGISTER_SYNC_CANCEL] = { HEAD(io_uring_sync_cancel_reg, D_IN) },
	[IORING_REGISTER_FILE_ALLOC_RANGE] = { HEAD(io_uring_file_index_range, D_IN) },
	[IORING_REGISTER_PBUF_STATUS] = { HEAD(io_uring_buf_status, D_INOUT) },
	[IORING_REGISTER_NAPI] = { HEAD(io_uring_napi, D_INOUT) },
	[IORING_UNREGISTER_NAPI] = { HEAD(io_uring_napi, D_OUT) },
	[IORING_REGISTER_CLOCK] = { HEAD(io_uring_clock_register, D_IN) },
	[IORING_REGISTER_CLONE_BUFFERS] = { HEAD(io_uring_clone_buffers, D_IN) },
	[IORING_REGISTER_SEND_MSG_RING] = { HEAD(io_uring_sqe, D_IN) },
	/* area and region are read by the kernel, then written back: kept as
	 * passed (only the first in/out region gets an exit copy) */
	[IORING_REGISTER_ZCRX_IFQ] = { HEAD(io_uring_zcrx_ifq_reg, D_INOUT), .reg = {
		ARR(P_FIELD(OFF(io_uring_zcrx_ifq_reg, area_ptr)), C_ONE,
		    sizeof(struct io_uring_zcrx_area_reg), D_INOUT),
		ARR(P_FIELD(OFF(io_uring_zcrx_ifq_reg, region_ptr)), C_ONE,
		    sizeof(struct io_uring_region_desc), D_INOUT) } },
	[IORING_REGISTER_RESIZE_RINGS] = { HEAD(io_uring_params, D_INOUT) },
	[IORING_REGISTER_MEM_REGION] = { HEAD(io_uring_mem_region_reg, D_IN), .reg = {
		ARR(P_FIELD(OFF(io_uring_mem_region_reg, region_uptr)), C_ONE,
		    sizeof(struct io_uring_region_desc), D_INOUT) } },
	/* the chain is all output by the end: walked and captured at exit */
	[IORING_REGISTER_QUERY] = { HEAD(io_uring_query_hdr, D_INOUT), .reg = {
		ARR(P_ARG, C_CHAIN, UW_QUERY_ENTRY, D_OUT) } },
	[UW_REGISTER_ZCRX_CTRL] = { HEAD(zcrx_ctrl, D_INOUT) },
	[UW_REGISTER_BPF_FILTER] = { HEAD(io_uring_bpf, D_INOUT), .reg = {
		ARR(P_FIELD(OFF(io_uring_bpf, filter.filter_ptr)),
		    C_FIELD(OFF(io_uring_bpf, filter.filter_len)),
		    sizeof(struct sock_filter), D_IN) } },
};

#endif /* URINGWATCH_PLANS_H */
