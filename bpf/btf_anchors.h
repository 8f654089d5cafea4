/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types kept in the object's BTF for user space, which reads its layouts
 * there rather than trusting its own copies.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_BTF_ANCHORS_H
#define URINGWATCH_BTF_ANCHORS_H

/* Keeps the uapi structs Python decodes in the object's BTF, where
 * tests/test_abi.py compares them with Python's layouts. */
struct uw_uapi_types {
	struct iovec iovec;
	struct io_uring_rsrc_register rsrc_register;
	struct io_uring_rsrc_update rsrc_update;
	struct io_uring_rsrc_update2 rsrc_update2;
	struct io_uring_probe probe;
	struct io_uring_probe_op probe_op;
	struct io_uring_restriction restriction;
	struct io_uring_buf_reg buf_reg;
	struct io_uring_buf_status buf_status;
	struct io_uring_napi napi;
	struct io_uring_clock_register clock_register;
	struct io_uring_clone_buffers clone_buffers;
	struct io_uring_sync_cancel_reg sync_cancel_reg;
	struct io_uring_file_index_range file_index_range;
	struct io_uring_sqe sqe;
	struct io_uring_zcrx_ifq_reg zcrx_ifq_reg;
	struct io_uring_zcrx_area_reg zcrx_area_reg;
	struct io_uring_region_desc region_desc;
	struct io_uring_mem_region_reg mem_region_reg;
	struct io_uring_query_hdr query_hdr;
	struct io_uring_params params;
	struct io_uring_query_opcode query_opcode;
	struct zcrx_ctrl zcrx_ctrl;
	struct io_uring_bpf bpf;
	struct io_uring_bpf_filter bpf_filter;
	struct sock_filter sock_filter;
};
struct uw_uapi_types *uw_uapi_anchor __attribute__((unused));

/* Record structs that are only ever bytes in the ring buffer. */
struct uw_record_types {
	struct uw_file file;
	struct uw_mem mem;
	struct uw_ident ident;
	struct uw_cred cred;
	struct uw_call3 call3;
	struct uw_task task;
};
struct uw_record_types *uw_record_anchor __attribute__((unused));
/* The records and map types only the ring buffer and user space see. */
struct uw_records {
	struct uw_ring ring;
	struct uw_op op;
	struct uw_use_key use_key;
	struct uw_op_key op_key;
	struct uw_use use;
	struct uw_action action;
};
struct uw_records *uw_records_anchor __attribute__((unused));
/* The repeat record travels only through the ring buffer, and the procs
 * map's value type must be named here for user space to find it. */
struct uw_repeat *uw_repeat_anchor __attribute__((unused));
struct uw_proc *uw_proc_anchor __attribute__((unused));
struct uw_agg *uw_agg_anchor __attribute__((unused));
struct uw_agg_key *uw_agg_key_anchor __attribute__((unused));
/* read from the rings-before iterator's fd (rings_before.h) */
struct uw_ring_fd *uw_ring_fd_anchor __attribute__((unused));
enum uw_ring_fd_flags *uw_ring_fd_flags_anchor __attribute__((unused));

/* Likewise for the enums Python reads (bpf/gen_abi.py). */
struct uw_enums {
	enum uw_kind kind;
	enum uw_call_flags call_flags;
	enum uw_region_flags region_flags;
	enum uw_counter counter;
	enum uw_limits limits;
	enum uw_resolve resolve;
	enum uw_role role;
	enum uw_file_flags file_flags;
	enum uw_mem_flags mem_flags;
	enum uw_ident_flags ident_flags;
	enum uw_op_flags op_flags;
	enum uw_op_reason op_reason;
	enum uw_action_flags action_flags;
	enum uw_action_limits action_limits;
	enum io_uring_op sqe_op;
	enum io_uring_register_op register_op;
	enum uw_register_newer register_newer;
	enum uw_drop drop;
	enum uw_rec rec;
	enum uw_ns_flags ns_flags;
	enum uw_part part;
	enum uw_op_target op_target;
	enum uw_abi abi;
	enum uw_sizes sizes;
};
struct uw_enums *uw_enums_anchor __attribute__((unused));

#endif
