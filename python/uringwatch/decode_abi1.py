"""Records of ABI 1, from dumps written before uw_ns_ctx was appended to
uw_call (ABI 2): the one place that knows the old layout.

ABI 1's uw_call is ABI 2's without the trailing `ns`, so an old record
becomes a current one by splicing in an empty uw_ns_ctx (flags 0: the
namespaced ids and hostname decode as None), then decodes as usual."""

from __future__ import annotations

from typing import Callable

from . import layout
from .decode import RecordError, decode
from .events import Event

# ABI 1's uw_call, frozen: the members of today's up to and with changed[].
ABI1_CALL = layout.Layout("uw_call", layout.CALL.members[:-1])
if ABI1_CALL.size != 272 or layout.CALL.members[-1][0] != "ns":
    raise ImportError("decode_abi1.py: uw_call changed other than by appending ns")
_HDR = layout.REC_HDR.struct
_EMPTY_NS = bytes(layout.NS_CTX.size)


def decode_abi1(buf, off: int, size: int, boot_to_wall: int,
                context: Callable[[int], tuple[str | None, str | None]] | None = None) -> Event:
    if size < ABI1_CALL.size:
        raise RecordError(f"ABI-1 call record of {size} bytes (fixed part is {ABI1_CALL.size})")
    kind, abi, rec_size = _HDR.unpack_from(buf, off)
    if abi != 1 or rec_size != size:
        raise RecordError(f"record ABI {abi} of {rec_size} bytes in an ABI-1 dump of {size}")
    rec = bytes(buf[off:off + size])
    new = (_HDR.pack(kind, layout.ABI_VERSION, size + len(_EMPTY_NS)) +
           rec[_HDR.size:ABI1_CALL.size] + _EMPTY_NS + rec[ABI1_CALL.size:])
    return decode(new, 0, len(new), boot_to_wall, context)
