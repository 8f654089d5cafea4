"""The kernel's io_uring uapi structs that `arg` points to.

Names follow include/uapi/linux/io_uring.h. The BPF object keeps these
types in its BTF (uw_uapi_anchor), and tests/test_abi.py checks each
layout here against it.
"""

from .layout import Layout

IOVEC = Layout("iovec", [("iov_base", "Q"), ("iov_len", "Q")])

RSRC_REGISTER = Layout("io_uring_rsrc_register", [
    ("nr", "I"), ("flags", "I"), ("resv2", "Q"), ("data", "Q"), ("tags", "Q"),
])

RSRC_UPDATE = Layout("io_uring_rsrc_update", [
    ("offset", "I"), ("resv", "I"), ("data", "Q"),
])

RSRC_UPDATE2 = Layout("io_uring_rsrc_update2", [
    ("offset", "I"), ("resv", "I"), ("data", "Q"), ("tags", "Q"),
    ("nr", "I"), ("resv2", "I"),
])

PROBE = Layout("io_uring_probe", [
    ("last_op", "B"), ("ops_len", "B"), ("resv", "H"), ("resv2", "3I"),
])

PROBE_OP = Layout("io_uring_probe_op", [
    ("op", "B"), ("resv", "B"), ("flags", "H"), ("resv2", "I"),
])

RESTRICTION = Layout("io_uring_restriction", [
    ("opcode", "H"), ("register_op", "B"), ("resv", "B"), ("resv2", "3I"),
])

BUF_REG = Layout("io_uring_buf_reg", [
    ("ring_addr", "Q"), ("ring_entries", "I"), ("bgid", "H"), ("flags", "H"),
    ("min_left", "I"), ("resv", "5I"),
])

BUF_STATUS = Layout("io_uring_buf_status", [
    ("buf_group", "I"), ("head", "I"), ("resv", "8I"),
])

NAPI = Layout("io_uring_napi", [
    ("busy_poll_to", "I"), ("prefer_busy_poll", "B"), ("opcode", "B"),
    ("pad", "2B"), ("op_param", "I"), ("resv", "I"),
])

CLOCK_REGISTER = Layout("io_uring_clock_register", [
    ("clockid", "I"), ("__resv", "3I"),
])

CLONE_BUFFERS = Layout("io_uring_clone_buffers", [
    ("src_fd", "I"), ("flags", "I"), ("src_off", "I"), ("dst_off", "I"),
    ("nr", "I"), ("pad", "3I"),
])

SYNC_CANCEL_REG = Layout("io_uring_sync_cancel_reg", [
    ("addr", "Q"), ("fd", "i"), ("flags", "I"), ("timeout", "qq"),
    ("opcode", "B"), ("pad", "7B"), ("pad2", "3Q"),
])

FILE_INDEX_RANGE = Layout("io_uring_file_index_range", [
    ("off", "I"), ("len", "I"), ("resv", "Q"),
])

SQE = Layout("io_uring_sqe", [
    ("opcode", "B"), ("flags", "B"), ("ioprio", "H"), ("fd", "i"),
    ("off", "Q"), ("addr", "Q"), ("len", "I"), ("msg_ring_flags", "I"),
    ("user_data", "Q"), ("buf_index", "H"), ("personality", "H"),
    ("file_index", "i"), ("addr3", "Q"), ("__pad2", "Q"),
])

ZCRX_OFFSETS = "4I2Q"  # struct io_uring_zcrx_offsets: head, tail, rqes, __resv2, __resv[2]

ZCRX_IFQ_REG = Layout("io_uring_zcrx_ifq_reg", [
    ("if_idx", "I"), ("if_rxq", "I"), ("rq_entries", "I"), ("flags", "I"),
    ("area_ptr", "Q"), ("region_ptr", "Q"), ("offsets", ZCRX_OFFSETS),
    ("zcrx_id", "I"), ("__resv2", "I"), ("__resv", "3Q"),
])

ZCRX_AREA_REG = Layout("io_uring_zcrx_area_reg", [
    ("addr", "Q"), ("len", "Q"), ("rq_area_token", "Q"), ("flags", "I"),
    ("dmabuf_fd", "I"), ("__resv2", "2Q"),
])

REGION_DESC = Layout("io_uring_region_desc", [
    ("user_addr", "Q"), ("size", "Q"), ("flags", "I"), ("id", "I"),
    ("mmap_offset", "Q"), ("__resv", "4Q"),
])

MEM_REGION_REG = Layout("io_uring_mem_region_reg", [
    ("region_uptr", "Q"), ("flags", "Q"), ("__resv", "2Q"),
])

QUERY_HDR = Layout("io_uring_query_hdr", [
    ("next_entry", "Q"), ("query_data", "Q"), ("query_op", "I"), ("size", "I"),
    ("result", "i"), ("__resv", "3I"),
])

QUERY_OPCODE = Layout("io_uring_query_opcode", [
    ("nr_request_opcodes", "I"), ("nr_register_opcodes", "I"), ("feature_flags", "Q"),
    ("ring_setup_flags", "Q"), ("enter_flags", "Q"), ("sqe_flags", "Q"),
    ("nr_query_opcodes", "I"), ("__pad", "I"),
])

# Newer than the vendored 6.18 types: bpf/uapi_newer.h.
ZCRX_CTRL = Layout("zcrx_ctrl", [
    ("zcrx_id", "I"), ("op", "I"), ("__resv", "2Q"), ("zc_export", "12I"),
])

BPF_FILTER = Layout("io_uring_bpf_filter", [
    ("opcode", "I"), ("flags", "I"), ("filter_len", "I"), ("pdu_size", "B"),
    ("resv", "3B"), ("filter_ptr", "Q"), ("resv2", "5Q"),
])

BPF = Layout("io_uring_bpf", [
    ("cmd_type", "H"), ("cmd_flags", "H"), ("resv", "I"), ("filter", BPF_FILTER.format[1:]),
])

SOCK_FILTER = Layout("sock_filter", [("code", "H"), ("jt", "B"), ("jf", "B"), ("k", "I")])

_SQ_OFF = "8IQ"   # struct io_sqring_offsets: head..array, resv1, user_addr
_CQ_OFF = "8IQ"   # struct io_cqring_offsets: head..flags, resv1, user_addr
PARAMS = Layout("io_uring_params", [
    ("sq_entries", "I"), ("cq_entries", "I"), ("flags", "I"),
    ("sq_thread_cpu", "I"), ("sq_thread_idle", "I"), ("features", "I"),
    ("wq_fd", "I"), ("resv", "3I"), ("sq_off", _SQ_OFF), ("cq_off", _CQ_OFF),
])

ALL = (IOVEC, RSRC_REGISTER, RSRC_UPDATE, RSRC_UPDATE2, PROBE, PROBE_OP,
       RESTRICTION, BUF_REG, BUF_STATUS, NAPI, CLOCK_REGISTER, CLONE_BUFFERS,
       SYNC_CANCEL_REG, FILE_INDEX_RANGE, SQE, ZCRX_IFQ_REG, ZCRX_AREA_REG,
       REGION_DESC, MEM_REGION_REG, QUERY_HDR, PARAMS, QUERY_OPCODE, ZCRX_CTRL,
       BPF_FILTER, BPF, SOCK_FILTER)
