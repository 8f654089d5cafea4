"""The events uringwatch emits: msgspec Structs, the same live and replayed."""

from __future__ import annotations

import msgspec

from ..dictlike import DictLike
from .identity import Cred, FileIdentity, MemoryIdentity, Resolve
from .payloads import Payload


def ring_id(value: int) -> str | None:
    """A ring's id (or another keyed id) as events show it: 16 hex digits;
    None for 0, none."""
    return f"{value:016x}" if value else None


class Toctou(msgspec.Struct, frozen=True, gc=False):
    """What happened to the argument's memory while the kernel read it.

    `changed` true proves a writer raced the kernel; false does not prove
    the kernel read what the tracer saw (see docs/EVENTS.md, TOCTOU)."""
    window_ns: int            # enter -> exit: when the kernel copies
    changed: bool
    changes: list[str]        # changed fields or elements, bounded
    more: bool                # more changes than listed
    exit_unreadable: bool     # the memory could not be re-read at exit
    checked: bool             # False: this kernel can't re-read (no bpf_loop)


class Event(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="call"):
    """One io_uring_register(2) call."""
    ts: int                   # wall clock at entry, ns since the epoch
    pid: int
    tid: int
    ppid: int | None          # None where this kernel can't provide it
    uid: int
    gid: int
    comm: str
    cgroup_id: int
    fd: int                   # a ring index when registered_ring
    opcode: int               # bit 31 stripped
    opcode_name: str
    registered_ring: bool     # IORING_REGISTER_USE_REGISTERED_RING was set
    arg: int
    nr_args: int
    ret: int
    duration_ns: int
    payload: Payload | None
    error: str | None = None  # errno name when ret < 0
    blind: bool = False       # fd == -1: no ring (QUERY, SEND_MSG_RING)
    pidns: int | None = None
    mntns: int | None = None
    toctou: Toctou | None = None
    cgroup_path: str | None = None   # below the cgroup2 root, live only
    container_id: str | None = None  # from the cgroup path's runtime naming
    files: list[FileIdentity] | None = None     # every fd the call carries, as of the call
    cred: Cred | None = None                    # REGISTER_PERSONALITY: what it saves
    memory: list[MemoryIdentity] | None = None  # what backs each registered buffer
    resolve: Resolve | None = None              # how identities were read (None: ABI 1)
    ring_id: str | None = None       # the ring acted on (None: no ring found)
    cred_id: str | None = None       # REGISTER_PERSONALITY: the credentials saved
    nspid: int | None = None         # pid in the caller's pid namespace (None: unreadable)
    nstid: int | None = None         # tid in the caller's pid namespace
    hostname: str | None = None      # the caller's UTS nodename (a container's hostname)
    # buffer rings the kernel allocated (IOU_PBUF_RING_MMAP) still mapped by
    # the caller after UNREGISTER_PBUF_RING (bpf/pbuf.h): "at_unregister",
    # this call's; "after_unregister", one an earlier call unregistered
    pbuf_mapped: list[str] | None = None


class Ring(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="ring"):
    """One io_uring_setup(2) call: a ring created (or refused)."""
    ts: int
    pid: int
    tid: int
    ppid: int | None
    uid: int
    gid: int
    comm: str
    cgroup_id: int
    ring_id: str | None       # the same in every event about this ring; None: no ring
    fd: int | None            # the ring's fd in the creator
    ret: int
    error: str | None
    duration_ns: int
    entries: int              # as asked
    sq_entries: int | None    # as the kernel set them (None: params unreadable)
    cq_entries: int | None
    flags: int | None         # IORING_SETUP_*
    flag_names: list[str]
    sq_thread_cpu: int | None  # with SQPOLL (and SQ_AFF)
    sq_thread_idle: int | None  # with SQPOLL, ms
    features: int | None      # IORING_FEAT_* the kernel returned
    feature_names: list[str]
    cgroup_path: str | None = None
    container_id: str | None = None


class OpCred(msgspec.Struct, frozen=True, gc=False):
    """Credentials an operation ran with; values None in counts, which carry
    only what the kernel's summary keeps (the ids and the submitter's euid)."""
    id: str | None            # the personality's: as in its register event's cred_id
    uid: int | None
    euid: int | None
    cap_effective: int | None


class RegisteredFile(DictLike, frozen=True, gc=False, omit_defaults=True):
    """A slot of a ring's registered-file table."""
    slot: int
    fd: int | None = None   # registered from (unknown for a ring from before tracing)


class RegisteredBuffer(DictLike, frozen=True, gc=False):
    """A ring's registered buffer."""
    index: int
    base: int
    len: int


class BufferGroup(DictLike, frozen=True, gc=False):
    """A provided-buffer ring (REGISTER_PBUF_RING)."""
    bgid: int
    ring_addr: int
    ring_entries: int


class Uses(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """What an operation used, joined to the registrations that made it."""
    file: RegisteredFile | None = None          # the registered file at the slot
    buffer: RegisteredBuffer | None = None      # the registered buffer at the index
    buffer_group: BufferGroup | None = None     # the provided-buffer ring of the group
    personality: int | None = None    # the id REGISTER_PERSONALITY returned
    # the registered file at the slot, as its registration's event named it
    # (REGISTER_FILES or FILES_UPDATE `files`; a ring from before tracing:
    # its kernel's fdinfo, see RingBefore)
    file_identity: FileIdentity | None = None


class Op(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="op"):
    """Operations a ring accepted (io_uring_submit_req), summarised by what
    they use: the first use of each (ring, opcode, resources, personality,
    submitter) (`reason` first_use), every one with --ops all (`each`), and
    counts since the last (`count`)."""
    ts: int                   # this operation; for a count, the last one
    first_ts: int
    count: int
    reason: str               # first_use, each, count
    ring_id: str
    opcode: int               # IORING_OP_*
    opcode_name: str
    pid: int                  # the submitter (its process for SQPOLL threads)
    tid: int
    comm: str
    uid: int                  # the submitter's process's current ids (for SQPOLL too)
    euid: int
    cgroup_id: int
    creator_pid: int | None   # the ring's creator, if seen being made (None in counts)
    sq_thread: bool           # submitted by the ring's SQPOLL thread
    fixed_file: int | None    # registered-file slot
    buffer_index: int | None  # registered-buffer index (READ_FIXED, WRITE_FIXED)
    buffer_group: int | None  # provided-buffer group (IOSQE_BUFFER_SELECT)
    personality_cred: OpCred | None  # the registered personality it ran under
    task_cred: OpCred | None    # the submitter's, when a personality was used or creds differ
    creds_differ: bool        # ran with other credentials than its process's current ones
    uses: Uses | None = None
    cgroup_path: str | None = None
    container_id: str | None = None
    # the SQPOLL thread's (its creator's at setup), when they differ and no
    # personality was used
    sq_thread_cred: OpCred | None = None
    # refused at submission with -EACCES (a BPF filter, or the ring's
    # restrictions): counted apart from the ops of its key that ran
    denied: bool = False
    # the open file its fd named at submission (a plain fd's in the
    # submitter's table; a fixed file's in the ring's table at its slot), a
    # keyed id of it (a new one for each file, also at the same fd number or
    # slot), and its identity: read in the kernel for a key's first use,
    # joined to the counts of that key in user space (rings.Ledger); role
    # "fd" (fd its number) or "slot" (fd the slot), error EBADF for an fd or
    # slot that named no file. None: no fd, or no kernel reads.
    file_id: str | None = None
    target: FileIdentity | None = None
    cmd_op: int | None = None   # URING_CMD's command (cmd_op)
    # SPLICE's and TEE's input (splice_fd_in; a fixed slot with
    # SPLICE_F_FD_IN_FIXED), as file_id and target are of their output
    file_in_id: str | None = None
    target_in: FileIdentity | None = None
    # MSG_RING's target: the id (as its ring event's ring_id) of the ring
    # whose file its fd or fixed slot named at submission, read in the
    # kernel; or, when that file is not a ring's (the kernel refuses it with
    # EBADFD), target_ring_error. None: not MSG_RING, no file, no kernel reads.
    target_ring: str | None = None
    target_ring_error: str | None = None
    # where a SEND, SENDMSG, SEND_ZC or SENDMSG_ZC sends to, when it names
    # it (addr2, msg_name): "udp 127.0.0.1:53" (the protocol its socket's,
    # else the family's), a keyed id of the address (each destination is a
    # key of its own, its counts joined to its first use by rings.Ledger),
    # and where it was read: "kernel" (prep's copy, 6.10+) or "user" (the
    # caller's memory at submission, which the kernel reads at issue);
    # destination_error when that memory was unreadable. None: none named
    # (a connected socket's peer is in `target`), or no kernel reads.
    destination_id: str | None = None
    destination: str | None = None
    destination_from: str | None = None
    destination_error: str | None = None


class RingBefore(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="ring_before"):
    """A ring made before tracing began, found at start, once: what it had
    registered then, as the kernel's /proc/PID/fdinfo of the ring lists it
    (docs/RINGS.md, What a ring did). Recordings hold it as its JSON (before.record)."""
    ts: int                   # wall clock when read, ns since the epoch
    pid: int                  # the first process holding it (lowest pid) kept by the filters
    fd: int                   # the ring's fd there
    comm: str
    uid: int                  # that process's real uid
    cgroup_id: int
    ring_id: str              # as its operations and register calls carry it
    holders: list[tuple[int, int]]  # every (pid, fd) holding the ring
    sq_thread: int | None     # the SQPOLL thread's pid (None: no SQPOLL thread)
    sq_thread_cpu: int | None
    files_registered: int     # size of its registered-file table (UserFiles)
    files: list[FileIdentity]  # the file at each slot (role "fds[SLOT]", fd -1, source "fdinfo")
    memory: list[MemoryIdentity]  # what backs each buffer, from /proc/PID/maps now
    buffers: list[RegisteredBuffer]
    personalities: list[int]  # registered personality ids (kernels before 6.x list them)
    cgroup_path: str | None = None
    container_id: str | None = None


class Target(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """What an action named, as the kernel took it at submission (the
    kernel's copy of a path; before 6.10 a CONNECT's address is read from
    the caller's memory, `address_from` "user"). Fields by opcode: paths
    and `dfd` (RENAMEAT, LINKAT: path -> path2 in dfd2; SYMLINKAT: path2
    is the link, path what it points to); OPENAT/OPENAT2 `flags`, `mode`,
    `resolve`; SOCKET `family`, `type`, `protocol`; CONNECT, BIND the
    address and, from the socket at completion, its type and protocol;
    READ_FIXED, WRITE_FIXED of length 0 the address in their buffer."""
    path: str | None = None
    path2: str | None = None
    dfd: int | None = None            # AT_FDCWD is -100
    dfd2: int | None = None
    flags: int | None = None          # open_how flags, AT_* flags, statx flags
    flag_names: list[str] | None = None
    mode: int | None = None
    resolve: int | None = None        # OPENAT2's RESOLVE_*
    mask: int | None = None           # STATX
    family: str | None = None         # AF_INET, AF_INET6, AF_UNIX, ...
    type: str | None = None           # SOCK_STREAM, ...
    protocol: int | None = None
    address: str | None = None        # 127.0.0.1:443, [::1]:80, /run/x.sock, @abstract, pid=0/groups=0x1
    address_from: str | None = None   # "kernel" (prep's copy) or "user"
    backlog: int | None = None
    file_slot: int | None = None      # opened into this fixed-file slot (None: an fd)
    truncated: bool = False           # a path longer than the record holds
    unread: str | None = None         # why no target: "no_kernel_reads", "fault"
    # the path the kernel reached where it differs from the one given: an
    # OPENAT's opened file's path, or a path relative to a dfd joined to the
    # directory's path (`file` holds either); `path_given` as the caller wrote it
    path_given: str | None = None
    path2_given: str | None = None
    name: str | None = None           # xattr ops: the attribute's name
    size: int | None = None           # xattr ops: the value's size
    # the file the op names by fd, read in the kernel: the file an OPENAT
    # opened (role "opened"; fd -1 into a fixed slot, whose file is the one
    # the ring's table holds there at completion, as for an ACCEPT or SOCKET
    # into a fixed slot), a relative path's directory ("dfd"), F*XATTR's
    # file ("fd"), ACCEPT's listening socket ("listener")
    file: FileIdentity | None = None
    # READ_FIXED, WRITE_FIXED (reported when of length 0): the address and
    # length prep took, the registered buffer's index, and joined to the
    # ring's registrations that buffer and where the address lies in it:
    # "start", "inside", "end" (just past its last byte), "outside"
    addr: int | None = None
    len: int | None = None
    buffer_index: int | None = None
    buffer: RegisteredBuffer | None = None
    buffer_at: str | None = None


class Action(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="action"):
    """One operation that opens, creates, connects, binds, unlinks,
    renames or links (each reported, never summarised): its target and
    its completion's result."""
    ts: int                   # submission, wall clock ns
    pid: int                  # the submitter (its process for SQPOLL threads)
    tid: int
    comm: str
    uid: int
    euid: int
    cgroup_id: int
    ring_id: str
    opcode: int               # IORING_OP_*
    opcode_name: str
    sq_thread: bool
    creator_pid: int | None
    user_data: int
    target: Target
    completion: str           # seen; not_seen (its request came again first);
                              # unjoined (no room to wait: sent at submission); at_stop;
                              # refused (at prep: result is its errno, target the SQE's)
    result: int | None        # the completion's res: fd, slot, 0; None if not seen
    error: str | None         # errno name when result < 0
    duration_ns: int | None   # submission -> completion
    fixed_file: int | None = None   # the op's own file is this registered slot
    personality: str | None = None  # cred id of the personality it ran under
    cgroup_path: str | None = None
    container_id: str | None = None
    count: int = 1            # actions it stands for: with `repeats`, identical ones
    repeats: bool = False     # folded repeats of the action its process sent before it
    denied: bool = False      # refused at submission with -EACCES (a BPF filter, restrictions)


class Repeat(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="repeat"):
    """`count` more calls of one process identical to its call just before
    (same opcode, fd, result, arguments and argument bytes), folded into
    one record instead of `count` events (docs/ARCHITECTURE.md, Fairness)."""
    ts: int                   # wall clock at entry of the first repeat, ns
    last_ts: int              # wall clock at entry of the last repeat, ns
    pid: int
    tid: int                  # the thread of the call repeated
    comm: str
    fd: int
    opcode: int               # bit 31 stripped
    opcode_name: str
    registered_ring: bool
    ret: int
    count: int                # calls folded into this record
    error: str | None = None  # errno name when ret < 0
    at_stop: bool = False     # read from the kernel's map at stop: no record came


class Evidence(msgspec.Struct, frozen=True, gc=False):
    """One event a finding rests on, by what names it in the stream."""
    kind: str                 # call, repeat, ring, op
    ts: int
    pid: int
    tid: int
    ring_id: str | None
    opcode_name: str | None   # None for a ring's creation


class Finding(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="finding"):
    """A rule of the findings rules (docs/ANALYSIS.md, Findings) matched: what it
    means, and the events it rests on."""
    ts: int                   # the last evidence's
    rule: str                 # the rule's id
    title: str
    severity: str             # info, low, medium, high, critical
    technique: str            # MITRE ATT&CK technique id
    explanation: str          # one sentence
    pid: int                  # the last evidence's process
    comm: str
    uid: int | None
    ring_id: str | None
    container_id: str | None
    evidence: list[Evidence]  # oldest first, at most the last 16
    rules_version: int        # the shipped rules file's version


# What the tracer yields and `--json` prints, one per line, told apart by
# "kind". `Event` stays the call, as it always was.
AnyEvent = Event | Repeat | Ring | Op | RingBefore | Action | Finding
