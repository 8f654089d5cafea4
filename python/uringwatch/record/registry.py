"""The register opcodes, one entry each: what Python knows of an
IORING_REGISTER_* opcode beyond its capture plan (bpf/plans.h) and its
decoder (arguments.SPECS).

An entry's place is the opcode's number. tests/test_registry.py holds the
table against every other place an opcode appears: the object's BTF (the
kernel's enum, bpf/uapi_newer.h), its capture plans, the decoders and
payload tags, the opcode table in docs/EVENTS.md and the committed corpus of real
tracer output (the identities identity.h resolves for each opcode);
docs/ADDING_AN_OPCODE.md says what to add where."""

from __future__ import annotations

from typing import NamedTuple


class Register(NamedTuple):
    name: str                       # IORING_<name>
    since: str                      # the first kernel with it (docs/EVENTS.md's table)
    files: tuple[str, ...] = ()     # the fd roles identity.h resolves, beside the ring's
    memory: bool = False            # user memory it pins (memory identities)
    cred: bool = False              # the caller's credentials (cred)
    ledger: bool = False            # followed by rings.Ledger (what a ring holds)


REGISTER = (
    Register("REGISTER_BUFFERS", "5.1", memory=True, ledger=True),
    Register("UNREGISTER_BUFFERS", "5.1", ledger=True),
    Register("REGISTER_FILES", "5.1", files=("fds",), ledger=True),
    Register("UNREGISTER_FILES", "5.1", ledger=True),
    Register("REGISTER_EVENTFD", "5.2", files=("eventfd",)),
    Register("UNREGISTER_EVENTFD", "5.2"),
    Register("REGISTER_FILES_UPDATE", "5.5", files=("fds",), ledger=True),
    Register("REGISTER_EVENTFD_ASYNC", "5.6", files=("eventfd",)),
    Register("REGISTER_PROBE", "5.6"),
    Register("REGISTER_PERSONALITY", "5.6", cred=True, ledger=True),
    Register("UNREGISTER_PERSONALITY", "5.6"),
    Register("REGISTER_RESTRICTIONS", "5.10"),
    Register("REGISTER_ENABLE_RINGS", "5.10"),
    Register("REGISTER_FILES2", "5.13", files=("fds",), ledger=True),
    Register("REGISTER_FILES_UPDATE2", "5.13", files=("fds",), ledger=True),
    Register("REGISTER_BUFFERS2", "5.13", memory=True, ledger=True),
    Register("REGISTER_BUFFERS_UPDATE", "5.13", memory=True, ledger=True),
    Register("REGISTER_IOWQ_AFF", "5.14"),
    Register("UNREGISTER_IOWQ_AFF", "5.14"),
    Register("REGISTER_IOWQ_MAX_WORKERS", "5.15"),
    Register("REGISTER_RING_FDS", "5.18", files=("ring_fds",)),
    Register("UNREGISTER_RING_FDS", "5.18"),
    Register("REGISTER_PBUF_RING", "5.19", memory=True, ledger=True),
    Register("UNREGISTER_PBUF_RING", "5.19", ledger=True),
    Register("REGISTER_SYNC_CANCEL", "6.0", files=("fd",)),
    Register("REGISTER_FILE_ALLOC_RANGE", "6.0"),
    Register("REGISTER_PBUF_STATUS", "6.8"),
    Register("REGISTER_NAPI", "6.9"),
    Register("UNREGISTER_NAPI", "6.9"),
    Register("REGISTER_CLOCK", "≈6.12"),
    Register("REGISTER_CLONE_BUFFERS", "6.12", files=("src_fd",)),
    Register("REGISTER_SEND_MSG_RING", "6.13", files=("sqe.fd",)),
    Register("REGISTER_ZCRX_IFQ", "6.15"),
    Register("REGISTER_RESIZE_RINGS", "6.13"),
    Register("REGISTER_MEM_REGION", "6.13", memory=True),
    Register("REGISTER_QUERY", "6.18"),
    Register("REGISTER_ZCRX_CTRL", "≈6.19"),
    Register("REGISTER_BPF_FILTER", "≈7.0"),
)

BY_NAME = {r.name: r for r in REGISTER}
