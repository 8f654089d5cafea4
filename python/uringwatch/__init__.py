"""uringwatch: see what processes hand the kernel through io_uring_register(2)."""

from .record.decode import RecordError, decode
from .record.events import AnyEvent, Event, Repeat, Toctou
from .record.filters import Filters
from .recordings.dump import DumpError
from .system.libbpf import LibbpfError
from .recordings.recorder import Recorder
from .recordings.replay import replay
from .errors import TracerError
from .live.tracer import Tracer

__all__ = ["AnyEvent", "DumpError", "Event", "Filters", "LibbpfError", "Recorder", "RecordError",
           "Repeat", "Toctou", "Tracer", "TracerError", "decode", "replay"]


def __getattr__(name: str):
    """__version__ from the package's metadata (meson.build's project()),
    read when asked: importlib.metadata costs startup time every run."""
    if name == "__version__":
        from .version import version
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
