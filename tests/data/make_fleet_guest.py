#!/usr/bin/env python3
"""Makes fleet-guest.uwd (root, in a guest of ci/kernels.py): the second
machine of tests/test_export.py's fleet, another kernel and hostname
recording tests/fleet_workload.py as that test records it (a ring handed to
a forked child, a root personality, four iovecs over one page).

    ci/kernels.py run 7.2 -- .venv/bin/python tests/data/make_fleet_guest.py --guest \
        | .venv/bin/python tests/data/make_fleet_guest.py --save

The guest sees this machine's files read-only: it prints the recording
base64-encoded between markers (the console's lines around it), and
--save here writes what is between them.
"""

import base64
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from test_export import record  # noqa: E402

OUT = HERE / "fleet-guest.uwd"

BEGIN, END = "@@fleet-guest@@", "@@end@@"

if __name__ == "__main__":
    if "--save" in sys.argv:
        text = sys.stdin.read()
        (b64,) = re.findall(re.escape(BEGIN) + r"\s*([A-Za-z0-9+/=\s]+?)\s*" + re.escape(END), text)
        OUT.write_bytes(base64.b64decode("".join(b64.split())))
    else:
        made = pathlib.Path("/tmp/fleet-guest.uwd")
        record(made, "handoff", "personality", "same-page")
        print(BEGIN, base64.encodebytes(made.read_bytes()).decode(), END, sep="\n", flush=True)
