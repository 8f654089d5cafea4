"""A separate process that makes io_uring_register calls on cue, so tests
can place it in a cgroup, a namespace or another uid first.

Prints its pid, waits for a line on stdin, makes the calls named on the
command line (opcode numbers; FILES calls pass fds [0, 1]), prints "done"."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import uring  # noqa: E402

print(os.getpid(), flush=True)
sys.stdin.readline()
ring = uring.setup()
for op in sys.argv[1:]:
    files = int(op) == uring.REGISTER_FILES
    uring.register(ring, int(op), uring.ints(0, 1) if files else None, 2 if files else 0)
print("done", flush=True)
