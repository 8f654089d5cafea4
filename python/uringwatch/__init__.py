"""uringwatch: see what processes hand the kernel through io_uring_register(2)."""

import sys as _sys

from .record.decode import RecordError, decode
# every kind of event (AnyEvent's members) at the top: their module moved
# into record/, the names users import did not
from .record.events import Action, AnyEvent, Event, Finding, Op, Repeat, Ring, RingBefore, Toctou
from .record.filters import Filters
from .recordings.dump import DumpError
from .system.libbpf import LibbpfError
from .recordings.recorder import Recorder
from .recordings.replay import replay
from .errors import TracerError
from .live.tracer import Tracer

from .outputs import output as _output
from .record import events as _events
from .system import containers as _containers

# Flat module paths that users' code and agents were shown before the
# modules moved into subpackages: still importable by those names.
for _name, _module in (("events", _events), ("output", _output), ("containers", _containers)):
    _sys.modules[f"{__name__}.{_name}"] = globals()[_name] = _module

__all__ = ["Action", "AnyEvent", "DumpError", "Event", "Filters", "Finding", "LibbpfError", "Op",
           "Recorder", "RecordError", "Repeat", "Ring", "RingBefore", "Toctou", "Tracer",
           "TracerError", "decode", "replay"]


def __getattr__(name: str):
    """__version__ from the package's metadata (meson.build's project()),
    read when asked: importlib.metadata costs startup time every run."""
    if name == "__version__":
        from .version import version
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
