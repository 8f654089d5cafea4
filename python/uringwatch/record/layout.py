"""Python's view of the record layouts in bpf/uringwatch.h.

The C header is the truth; tests/test_abi.py checks every layout here
(size, member names, offsets) against the BTF of the built object.
"""

from __future__ import annotations

import struct
from typing import Literal, get_args

ABI_VERSION = 3

COMM_LEN = 16
NREGION = 4
MAX_CHANGED = 16

# enum uw_limits: bounds, and the defaults Tracer and the CLI start from
HEAD_MAX = 128
CAP_MAX = 1024
DEFAULT_CAP = 64
DEFAULT_SNAP_BYTES = 64
DEFAULT_RING_BYTES = 8 << 20
DEFAULT_MAX_INFLIGHT = 256
DEFAULT_WAKEUP_BYTES = 256 << 10
# without bpf_loop only calls this small are hashed, so can be coalesced
SIG_UNROLLED = 256          # capture bytes
SIG_FILES_UNROLLED = 4      # files
QUERY_MAX = 8               # QUERY chain entries captured
QUERY_DATA = 48             # bytes of each entry's data, after its header
DEFAULT_MAX_AGGS = 4096     # aggregates (uid, cgroup) with fairness state
AGG_OVERFLOW_UID = 0xFFFFFFFF   # (this uid, cgroup 0): where aggregates go past it

FILES_MAX = 64
MEMS_MAX = 16
PATH_MAX = 176
HOSTNAME_LEN = 64

KIND_CALL = 1
KIND_REPEAT = 2
KIND_RING = 3
KIND_OP = 4
KIND_REPEAT_END = 5         # a repeat record sent as its process ended
KIND_ACTION = 6             # an operation that opens or changes something (bpf/targets.h)
KIND_RING_BEFORE = 7        # a ring made before tracing: its event as JSON (before.py)
PARAMS_LEN = 120

# enum uw_op_flags
OP_FIXED_FILE = 1 << 0
OP_FIXED_BUF = 1 << 1
OP_BUF_SELECT = 1 << 2
OP_CREDS = 1 << 3
OP_CREDS_DIFFER = 1 << 4
OP_SQ_THREAD = 1 << 5
OP_SPILLED = 1 << 6
OP_DENIED = 1 << 7

# enum uw_op_reason
OP_FIRST, OP_EACH, OP_COUNT = 1, 2, 3

# enum uw_op_target: uw_op_key.target
OPT_FD = 1 << 0
OPT_BADF = 1 << 1
OPT_CMD = 1 << 2
OPT_SLOT = 1 << 3        # with OPT_FD: the fd is a fixed-file slot (the ring's table)
OPT_IN = 1 << 4          # SPLICE/TEE's input looked up: file_in_id, or OPT_IN_BADF
OPT_IN_BADF = 1 << 5
OPT_IN_SLOT = 1 << 6     # the input is a fixed slot (SPLICE_F_FD_IN_FIXED)

# enum uw_action_flags
ACT_DONE = 1 << 0
ACT_UNSEEN = 1 << 1
ACT_UNJOINED = 1 << 2
ACT_NO_TARGET = 1 << 3
ACT_PATH_TRUNC = 1 << 4
ACT_PATH2_TRUNC = 1 << 5
ACT_ADDR_USER = 1 << 6
ACT_FAULT = 1 << 7
ACT_AT_STOP = 1 << 8
ACT_FILE = 1 << 9
ACT_REFUSED = 1 << 10
ACT_REPEATS = 1 << 11
ACT_OPENED = 1 << 12
# enum uw_action_limits
ACT_PATH = 256
ACT_ADDR = 112

# uw_call.flags
F_PPID = 1 << 0
F_NS = 1 << 1
F_CHANGED = 1 << 2
F_EXIT_FAULT = 1 << 3
F_CHANGED_MORE = 1 << 4
F_UNCOMPARED = 1 << 5
F_RAW = 1 << 6

# uw_ns_ctx.flags
NS_IDS = 1 << 0
NS_UTS = 1 << 1

# enum uw_part: uw_call3.parts, the parts an ABI-3 record has, in this order
P_TASK = 1 << 0
P_NS = 1 << 1
P_CRED = 1 << 2
P_RING = 1 << 3

# uw_region.flags
R_FAULT = 1 << 0
R_TRUNC = 1 << 1
R_OUT = 1 << 2
R_CHANGED = 1 << 3
R_EXIT_FAULT = 1 << 4

# enum uw_resolve: how identities are read, named once here, best first
# (hooks.pick_resolve tries them in this order)
ResolvePath = Literal["btf", "probe_read", "proc", "off"]
RES_OFF, RES_PROC, RES_PROBE_READ, RES_BTF = 0, 1, 2, 3
RESOLVE_NAMES: dict[int, ResolvePath] = dict(zip((RES_BTF, RES_PROBE_READ, RES_PROC, RES_OFF),
                                                 get_args(ResolvePath)))
RESOLVE_CODES: dict[ResolvePath, int] = {v: k for k, v in RESOLVE_NAMES.items()}

# enum uw_role
ROLE_RING, ROLE_FDS, ROLE_EVENTFD, ROLE_SRC_FD, ROLE_FD, ROLE_RING_FDS, ROLE_SQE_FD, \
    ROLE_MEM, ROLE_SLOT = range(1, 10)

# uw_file.flags
FL_FOUND = 1 << 0
FL_BADF = 1 << 1
FL_UNRESOLVED = 1 << 2
FL_ROOTED = 1 << 3
FL_PSEUDO = 1 << 4
FL_PATH_TRUNC = 1 << 5
FL_SOCK = 1 << 6
FL_FAULT = 1 << 7
FL_SAME_AT_EXIT = 1 << 8
FL_KERNEL = 1 << 9
FL_RACED = 1 << 10
FL_AT_EXIT = 1 << 11

# uw_mem.flags
M_FOUND = 1 << 0
M_NOVMA = 1 << 1
M_UNRESOLVED = 1 << 2
M_FILE = 1 << 3
M_BUSY = 1 << 4
M_KERNEL = 1 << 5
M_RACED = 1 << 6

# uw_ident.flags
I_FILES_TRUNC = 1 << 0
I_MEMS_TRUNC = 1 << 1
I_CRED = 1 << 2
I_CHECKED = 1 << 3
I_MEM_CHECKED = 1 << 4
I_PBUF_MAPPED = 1 << 5
I_PBUF_KEPT = 1 << 6

# enum uw_counter, in order
COUNTERS = ("emitted", "ring_full", "no_exit", "no_enter", "inflight_full",
            "read_fault", "filtered", "coalesced", "budget", "procs_full", "repeats",
            "ops_untracked", "reserve", "light", "aggs_full", "procs_ended",
            "actions_lost", "recs_held", "frees_lost")

# enum uw_drop, in order: uw_proc.drops[]
DROPS = ("budget", "ring_full", "inflight_full", "reserve")
# enum uw_rec, in order: uw_proc.rec_drops[], as a process's counts name them
REC_DROPS = ("rings_dropped", "ops_dropped", "actions_dropped")


def cstr(raw: bytes) -> str:
    """A char array the kernel filled (comm, hostname): the bytes before its
    first NUL, as text; bytes that are not UTF-8 become U+FFFD."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class Layout:
    """A C struct as (member, struct-format) pairs, little-endian, packed
    exactly as the C compiler lays it out (the header pads explicitly)."""

    def __init__(self, name: str, members: list[tuple[str, str]]):
        self.name = name
        self.members = members
        self.offsets: dict[str, int] = {}
        off = 0
        for member, fmt in members:
            self.offsets[member] = off
            off += struct.calcsize("<" + fmt)
        self.size = off
        self.format = "<" + "".join(fmt for _, fmt in members)
        self.struct = struct.Struct(self.format)
        # how many unpacked values each member spans ("3I" spans 3)
        self._spans = [len(struct.unpack("<" + fmt, bytes(struct.calcsize("<" + fmt))))
                       for _, fmt in members]
        self._flat = all(n == 1 for n in self._spans)
        self._names = tuple(m for m, _ in members)

    def unpack(self, buf, off: int = 0) -> dict:
        """Member name -> value, a tuple for members that span several."""
        values = self.struct.unpack_from(buf, off)
        out, i = {}, 0
        for (member, _), n in zip(self.members, self._spans):
            out[member] = values[i] if n == 1 else values[i:i + n]
            i += n
        return out

    def pack(self, **values) -> bytes:
        """The struct's bytes from member values (tuples for members that
        span several); members not given are zero."""
        flat: list = []
        for (member, fmt), n in zip(self.members, self._spans):
            v = values.get(member)
            if v is None:
                flat.extend(struct.unpack("<" + fmt, bytes(struct.calcsize("<" + fmt))))
            else:
                flat.extend(v if n > 1 else (v,))
        return self.struct.pack(*flat)

    def rows(self, buf):
        """The raw values of every whole element in buf, packed back to back."""
        return self.struct.iter_unpack(buf[:len(buf) - len(buf) % self.size])

    def unpack_all(self, buf) -> list[dict]:
        """unpack() of every whole element in buf, packed back to back."""
        if self._flat:      # the common case, without the per-member loop
            names = self._names
            return [dict(zip(names, v)) for v in self.rows(buf)]
        return [self.unpack(buf, off)
                for off in range(0, len(buf) - self.size + 1, self.size)]


REC_HDR = Layout("uw_rec_hdr", [("kind", "H"), ("abi", "H"), ("size", "I")])

REGION = Layout("uw_region", [
    ("addr", "Q"), ("count", "I"), ("len", "I"), ("elem", "H"),
    ("flags", "H"), ("pad", "I"),
])

# ABI 1 (frozen): uw_call before identities. Records of that ABI (older
# dumps) are decoded with this layout; nothing else about them differs.
CALL_ABI1 = Layout("uw_call", [
    ("hdr", "HHI"),
    ("ts_enter", "Q"), ("ts_exit", "Q"), ("arg", "Q"), ("ret", "q"),
    ("cgroup_id", "Q"), ("pid", "I"), ("tid", "I"), ("ppid", "I"),
    ("uid", "I"), ("gid", "I"), ("fd", "i"), ("opcode", "I"),
    ("nr_args", "I"), ("pidns", "I"), ("mntns", "I"), ("flags", "I"),
    ("nchanged", "I"), ("comm", f"{COMM_LEN}s"),
    ("region", REGION.format[1:] * NREGION),
    ("changed", f"{MAX_CHANGED}I"),
])

NS_CTX = Layout("uw_ns_ctx", [
    ("nspid", "I"), ("nstid", "I"), ("flags", "I"), ("pad", "I"),
    ("hostname", f"{HOSTNAME_LEN}s"),
])

RING = Layout("uw_ring", [
    ("hdr", "HHI"), ("ts_enter", "Q"), ("ts_exit", "Q"), ("ring_id", "Q"), ("ret", "q"),
    ("cgroup_id", "Q"), ("params_addr", "Q"), ("pid", "I"), ("tid", "I"), ("ppid", "I"),
    ("uid", "I"), ("gid", "I"), ("entries", "I"), ("flags", "I"), ("pad", "I"),
    ("comm", f"{COMM_LEN}s"), ("params", f"{PARAMS_LEN}s"),
])

USE_KEY = Layout("uw_use_key", [
    ("ring_id", "Q"), ("cred_id", "Q"), ("file_slot", "i"), ("buf", "i"), ("euid", "I"),
    ("pid", "I"), ("opcode", "B"), ("flags", "B"), ("pad", "H"), ("uid", "I"),
])

USE = Layout("uw_use", [
    ("count", "Q"), ("first_ts", "Q"), ("last_ts", "Q"), ("cgroup_id", "Q"),
    ("pid", "I"), ("tid", "I"), ("comm", f"{COMM_LEN}s"),
])

CRED = Layout("uw_cred", [
    ("uid", "I"), ("euid", "I"), ("suid", "I"), ("fsuid", "I"),
    ("gid", "I"), ("egid", "I"), ("sgid", "I"), ("fsgid", "I"),
    ("ngroups", "I"), ("pad", "I"), ("cap_effective", "Q"), ("cap_permitted", "Q"),
])

IDENT = Layout("uw_ident", [
    ("nfiles", "H"), ("nmem", "H"), ("flags", "H"), ("path", "B"), ("pad", "B"),
    ("cred", CRED.format[1:]),
])

# ABI 2's record; in the object, a call's state while in flight
CALL = Layout("uw_call", CALL_ABI1.members + [("ident", IDENT.format[1:]), ("ring", "2Q"),
                            ("ns", NS_CTX.format[1:])])

# ABI 3: the fixed part of a call record; the regions, changed[] and the
# parts it names follow (bpf/uringwatch.h), then the data as in ABI 2
CALL3 = Layout("uw_call3", [
    ("hdr", "HHI"), ("ts_enter", "Q"), ("ts_exit", "Q"), ("arg", "Q"), ("ret", "q"),
    ("cgroup_id", "Q"), ("pid", "I"), ("tid", "I"), ("uid", "I"), ("gid", "I"),
    ("fd", "i"), ("opcode", "I"), ("nr_args", "I"), ("flags", "I"), ("data_len", "I"),
    ("head_len", "H"), ("regions", "B"), ("nchanged", "B"), ("nfiles", "H"), ("nmem", "H"),
    ("ident_flags", "H"), ("path", "B"), ("parts", "B"), ("comm", f"{COMM_LEN}s"),
])
TASK = Layout("uw_task", [("ppid", "I"), ("pidns", "I"), ("mntns", "I"), ("pad", "I")])
RING_REF = Layout("uw_ring_ref", [("ring_id", "Q"), ("cred_id", "Q")])

FILE = Layout("uw_file", [
    ("fd", "i"), ("role", "H"), ("index", "H"), ("flags", "H"), ("path_len", "H"),
    ("mode", "I"), ("ino", "Q"), ("dev", "I"), ("magic", "I"),
    ("family", "H"), ("type", "H"), ("protocol", "H"), ("lport", "H"), ("rport", "H"),
    ("pad", "H"), ("pad2", "I"), ("laddr", "16s"), ("raddr", "16s"),
    ("path", f"{PATH_MAX}s"),
])

ACTION = Layout("uw_action", [
    ("hdr", "HHI"), ("key", USE_KEY.format[1:]), ("ts", "Q"), ("ts_done", "Q"),
    ("cgroup_id", "Q"), ("user_data", "Q"), ("res", "q"), ("arg", "3Q"),
    ("dfd", "i"), ("dfd2", "i"), ("file_slot", "I"), ("addr_len", "I"),
    ("pid", "I"), ("tid", "I"), ("creator_pid", "I"), ("flags", "I"),
    ("comm", f"{COMM_LEN}s"), ("addr", f"{ACT_ADDR}s"), ("path", f"{ACT_PATH}s"),
    ("path2", f"{ACT_PATH}s"), ("count", "Q"), ("file", FILE.format[1:]),
])

OP_KEY = Layout("uw_op_key", [
    ("use", USE_KEY.format[1:]), ("file_id", "Q"), ("cmd_op", "I"), ("target", "I"),
    ("file_in_id", "Q"),
])

USE_PENDING = Layout("uw_use_pending", [
    ("key", OP_KEY.format[1:]), ("use", USE.format[1:]),
])

OP = Layout("uw_op", [
    ("hdr", "HHI"), ("key", USE_KEY.format[1:]), ("ts", "Q"), ("first_ts", "Q"),
    ("count", "Q"), ("cgroup_id", "Q"), ("cap_effective", "Q"),
    ("cred_cap_effective", "Q"), ("pid", "I"), ("tid", "I"), ("creator_pid", "I"),
    ("cred_uid", "I"), ("cred_euid", "I"), ("reason", "I"),
    ("comm", f"{COMM_LEN}s"), ("file_id", "Q"), ("cmd_op", "I"), ("target", "I"),
    ("file", FILE.format[1:]), ("file_in_id", "Q"), ("file_in", FILE.format[1:]),
])

# uw_op of a key with no target (UW_OP_SHORT), as every op was recorded
# before targets, and of one with no input (UW_OP_TARGET, every op before
# SPLICE/TEE's input): read with the rest zeroed
OP_SHORT = OP.offsets["file_id"]
OP_TARGET = OP.offsets["file_in_id"]

# uw_action as recorded before `count` and `file` were appended: read
# with them zeroed (one action, no file)
ACTION_SHORT = ACTION.offsets["count"]

ACT_RUN = Layout("uw_act_run", [
    ("sig", "Q"), ("shown_ts", "Q"), ("count", "Q"), ("first_ts", "Q"), ("last_ts", "Q"),
    ("rec", ACTION.format[1:]),
])

MEM = Layout("uw_mem", [
    ("addr", "Q"), ("len", "Q"), ("vm_start", "Q"), ("vm_end", "Q"), ("vm_pgoff", "Q"),
    ("vm_flags", "Q"), ("flags", "I"), ("pad", "I"), ("file", FILE.format[1:]),
])

REPEAT = Layout("uw_repeat", [
    ("hdr", "HHI"), ("first_ts", "Q"), ("last_ts", "Q"), ("coalesced", "Q"),
    ("ret", "q"), ("pid", "I"), ("tid", "I"), ("fd", "i"), ("opcode", "I"),
    ("comm", f"{COMM_LEN}s"),
])

AGG_KEY = Layout("uw_agg_key", [("cgroup_id", "Q"), ("uid", "I"), ("pad", "I")])
BUCKET = Layout("uw_bucket", [("credit", "Q"), ("ts", "Q")])

PROC = Layout("uw_proc", [
    ("sig", "Q"), ("coalesced", "Q"), ("run_first", "Q"), ("run_last", "Q"),
    ("credit", "Q"), ("credit_ts", "Q"), ("light", BUCKET.format[1:]),
    ("agg", AGG_KEY.format[1:]), ("opcodes", "Q"), ("drops", f"{len(DROPS)}Q"),
    ("rec_drops", f"{len(REC_DROPS)}Q"),
    ("ret", "q"), ("tid", "I"), ("fd", "i"), ("opcode", "I"), ("firsts", "I"),
    ("comm", f"{COMM_LEN}s"),
])

AGG = Layout("uw_agg", [
    ("budget", BUCKET.format[1:]), ("coalesced", "Q"), ("drops", f"{len(DROPS)}Q"),
    ("rec_drops", f"{len(REC_DROPS)}Q"), ("ended", "Q"),
])

# uw_ring_fd (rings_before.h): read from the iterator's fd at start
RFD_MADE = 1 << 0           # enum uw_ring_fd_flags
RING_FD = Layout("uw_ring_fd", [
    ("ring_id", "Q"), ("fops_id", "Q"), ("pid", "I"), ("fd", "i"), ("flags", "I"),
    ("pad", "I"),
])

COUNTERS_LAYOUT = Layout("uw_counters", [("n", f"{len(COUNTERS)}Q")])

CONFIG = Layout("uw_config", [
    ("abi", "I"), ("cap", "I"), ("snap_bytes", "I"), ("use_task_btf", "I"),
    ("wakeup_bytes", "Q"), ("generic", "I"),
    ("targ_pids", "I"), ("targ_cgroups", "I"), ("targ_uid", "I"), ("targ_failed", "I"),
    ("resolve", "I"), ("targ_opcodes", "Q"), ("targ_comm", f"{COMM_LEN}s"),
    ("id_key", "2Q"), ("fair_key", "Q"), ("fair_cost_ns", "Q"), ("fair_burst_ns", "Q"),
    ("ops_all", "I"), ("fair", "I"), ("req_creds_bit", "I"), ("pad2", "I"),
    ("fair_agg_cost_ns", "Q"), ("fair_agg_burst_ns", "Q"), ("fair_light_cost_ns", "Q"),
    ("fair_light_burst_ns", "Q"), ("fair_budget_bytes", "Q"), ("fair_reserve_bytes", "Q"),
])

ALL = (REC_HDR, REGION, CALL, CALL3, TASK, RING_REF, NS_CTX, REPEAT, PROC, AGG_KEY, BUCKET,
       AGG, RING, USE_KEY, USE, OP_KEY, USE_PENDING, OP,
       ACTION, ACT_RUN,
       COUNTERS_LAYOUT, CONFIG, CRED, IDENT, FILE, MEM, RING_FD)
