"""uringwatch: see what processes hand the kernel through io_uring_register(2)."""

from .decode import RecordError, decode
from .events import Event, Toctou
from .filters import Filters
from .libbpf import LibbpfError
from .tracer import Tracer, TracerError

__all__ = ["Event", "Filters", "LibbpfError", "RecordError", "Toctou", "Tracer", "TracerError",
           "decode"]
__version__ = "0.1.0"
