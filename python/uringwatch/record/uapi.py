"""The kernel's io_uring uapi structs that `arg` points to.

Names follow include/uapi/linux/io_uring.h. The BPF object keeps these
types in its BTF (uw_uapi_anchor), and each layout here is read from it
(layout.Layout.of): of an anonymous union, the member named here; where
Python reads a member otherwise than its C type says, the format here.
"""

from .layout import Layout

IOVEC = Layout.of("iovec")
RSRC_REGISTER = Layout.of("io_uring_rsrc_register")
RSRC_UPDATE = Layout.of("io_uring_rsrc_update")
RSRC_UPDATE2 = Layout.of("io_uring_rsrc_update2")
PROBE = Layout.of("io_uring_probe")          # its ops[] follow: region 1
PROBE_OP = Layout.of("io_uring_probe_op")
RESTRICTION = Layout.of("io_uring_restriction", "opcode", "register_op", "resv", "resv2")
BUF_REG = Layout.of("io_uring_buf_reg")
BUF_STATUS = Layout.of("io_uring_buf_status")
NAPI = Layout.of("io_uring_napi")
CLOCK_REGISTER = Layout.of("io_uring_clock_register")
CLONE_BUFFERS = Layout.of("io_uring_clone_buffers")
SYNC_CANCEL_REG = Layout.of("io_uring_sync_cancel_reg")
FILE_INDEX_RANGE = Layout.of("io_uring_file_index_range")

# file_index read signed, as its union's splice_fd_in (-1: none)
SQE = Layout.of("io_uring_sqe", "opcode", "flags", "ioprio", "fd", "off", "addr", "len",
                "msg_ring_flags", "user_data", "buf_index", "personality", "file_index",
                "addr3", "__pad2", file_index="i")

# The reserved tail as 6.18 names it: kernels from 7.x use part of it
# (rx_buf_len, event_desc; the arm64 vmlinux.h has them), which this
# decoder doesn't read, so that its events are the same whichever
# vmlinux.h the object was built against.
ZCRX_IFQ_REG = Layout.of("io_uring_zcrx_ifq_reg", "if_idx", "if_rxq", "rq_entries", "flags",
                         "area_ptr", "region_ptr", "offsets", "zcrx_id",
                         reserved=(("__resv2", "I"), ("__resv", "3Q")))

ZCRX_AREA_REG = Layout.of("io_uring_zcrx_area_reg")
REGION_DESC = Layout.of("io_uring_region_desc")
MEM_REGION_REG = Layout.of("io_uring_mem_region_reg")
QUERY_HDR = Layout.of("io_uring_query_hdr")
QUERY_OPCODE = Layout.of("io_uring_query_opcode")

# Newer than the vendored 6.18 types: bpf/uapi_newer.h.
ZCRX_CTRL = Layout.of("zcrx_ctrl", "zcrx_id", "op", "__resv", "zc_export")
BPF_FILTER = Layout.of("io_uring_bpf_filter")
BPF = Layout.of("io_uring_bpf")
SOCK_FILTER = Layout.of("sock_filter")

PARAMS = Layout.of("io_uring_params")

ALL = (IOVEC, RSRC_REGISTER, RSRC_UPDATE, RSRC_UPDATE2, PROBE, PROBE_OP,
       RESTRICTION, BUF_REG, BUF_STATUS, NAPI, CLOCK_REGISTER, CLONE_BUFFERS,
       SYNC_CANCEL_REG, FILE_INDEX_RANGE, SQE, ZCRX_IFQ_REG, ZCRX_AREA_REG,
       REGION_DESC, MEM_REGION_REG, QUERY_HDR, PARAMS, QUERY_OPCODE, ZCRX_CTRL,
       BPF_FILTER, BPF, SOCK_FILTER)
