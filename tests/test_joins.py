"""An operation on a registered file shows the file its registration
named, and follows the slot as FILES_UPDATE replaces, empties or skips it."""

import ctypes
import os

import pytest

import uring
from helpers import needs_root
from test_rings import collect, kinds, needs_ops

pytestmark = needs_root


def update(ring: uring.Ring, offset: int, fd: int) -> None:
    fds = uring.ints(fd)
    arg = uring.RsrcUpdate(offset, 0, ctypes.addressof(fds))
    assert uring.register(ring.fd, uring.REGISTER_FILES_UPDATE, arg, 1) == 1


def test_files_update_moves_a_slots_identity(needs_ops, tmp_path):
    from uringwatch import Filters, Tracer
    from uringwatch.outputs.output import row
    first, second = tmp_path / "first", tmp_path / "second"
    for p in (first, second):
        p.write_bytes(b"x" * 64)
    buf = ctypes.create_string_buffer(64)

    def read(ring, slot):
        ring.put(0, uring.OP_READ, fd=slot,
                 addr=ctypes.addressof(buf), length=64, flags=uring.SQE_FIXED_FILE)
        ring.submit(1)

    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True, ops_all=True) as t:
        r = uring.Ring(8)
        fds = [os.open(p, os.O_RDONLY) for p in ("/etc/hostname", first, second)]
        assert uring.register(r.fd, uring.REGISTER_FILES, uring.ints(*fds[:2]), 2) == 0
        read(r, 1)                      # first
        update(r, 1, fds[2])
        read(r, 1)                      # second
        update(r, 0, -2)                # IORING_REGISTER_FILES_SKIP: slot 0 stays
        read(r, 0)                      # /etc/hostname
        update(r, 1, -1)                # emptied
        read(r, 1)                      # no file
        events = collect(t, lambda ev: len([e for e in kinds(ev, "Op")
                                            if e.ring_id and e.opcode_name == "READ"]) >= 4)
        r.close()
        for fd in fds:
            os.close(fd)
    ops = [e for e in kinds(events, "Op") if e.opcode_name == "READ" and e.reason == "each"]
    named = [(e.fixed_file, e.uses.file_identity.path if e.uses and e.uses.file_identity
              else None) for e in ops]
    assert named == [(1, str(first)), (1, str(second)), (0, "/etc/hostname"), (1, None)]
    assert ops[1].uses.file == {"slot": 1, "fd": fds[2]}
    assert ops[3].uses is None
    assert f"file[1]={second}" in row(ops[1])
    # the slot's file as the kernel's table held it: the same, and none
    # in the emptied slot (tests/test_op_files.py)
    assert [e.target.path for e in ops[:3]] == [str(first), str(second), "/etc/hostname"]
    assert ops[3].target.error.startswith("EBADF") and row(ops[3]).endswith(" file[1]=EBADF")
