"""How a command that reads recordings fails: one escaped line on stderr
and one exit code, the same for `replay`, `findings`, `export` and
`policy`."""

from __future__ import annotations

from .. import screen
from ..recordings.dump import DumpError
from ..errors import os_message
from ..exitcodes import EXIT_ERROR

# what reading a recording may raise; `except UNREADABLE as e: return unreadable(e)`
UNREADABLE = (DumpError, OSError)


def unreadable(e: DumpError | OSError) -> int:
    """Says what could not be read, in one line (a path can hold anything,
    so it is escaped), and returns the exit code: a DumpError's own code,
    EXIT_ERROR for an OSError without Python's [Errno N]. A closed pipe is
    no failure of the recording: it goes on up, for main() to end quietly."""
    if isinstance(e, BrokenPipeError):
        raise e
    if isinstance(e, DumpError):
        screen.error(e)
        return e.code
    screen.error(os_message(e))
    return EXIT_ERROR
