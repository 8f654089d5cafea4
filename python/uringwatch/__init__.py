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
__version__ = "0.1.0"
