"""uringwatch: see what processes hand the kernel through io_uring_register(2)."""

from .decode import RecordError, decode
from .events import AnyEvent, Event, Repeat, Toctou
from .filters import Filters
from .dump import DumpError
from .libbpf import LibbpfError
from .recorder import Recorder
from .replay import replay
from .errors import TracerError
from .tracer import Tracer

__all__ = ["AnyEvent", "DumpError", "Event", "Filters", "LibbpfError", "Recorder", "RecordError",
           "Repeat", "Toctou", "Tracer", "TracerError", "decode", "replay"]


def __getattr__(name: str):
    """__version__ from the package's metadata (meson.build's project()),
    read when asked: importlib.metadata costs startup time every run."""
    if name == "__version__":
        from importlib.metadata import version
        return version("uringwatch")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
