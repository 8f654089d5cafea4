#!/usr/bin/env python3
"""One row of the kernel matrix, measured from inside that kernel.

Run by ci/matrix inside each guest (and natively for the host) with the
checkout's .venv Python, so every kernel runs the one BPF object built on
the host. Prints the pytest output, then one line: RESULT_MARK and JSON
with what `uringwatch probe --json` says, what the tracer really loaded,
and the test counts. Exit 0 only if the object loaded and no test failed.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The end-to-end tests: each loads the object and makes real calls.
TESTS = ["tests/test_foundation.py", "tests/test_opcodes.py", "tests/test_hooks.py",
         "tests/test_toctou.py", "tests/test_identity.py", "tests/test_rings.py",
         "tests/test_ns_identity.py", "tests/test_identity_race.py", "tests/test_policy.py",
         "tests/test_policy_kernel.py", "tests/test_targets.py", "tests/test_op_files.py",
         # the exploit precursors' rules, on each kernel where the calls exist
         *(f"tests/test_findings.py::{t}" for t in (
             "test_buffers_mapping_one_page_repeatedly", "test_personality_churn",
             "test_resize_churn", "test_toctou_race_on_files_is_a_finding",
             "test_a_zero_length_fixed_read_at_its_buffers_end_fires"))]
# Deselected in guests: what they check is user space's, the same on every
# kernel, and the host's suite runs them (each costs a guest 10-25 s of TCG)
HOST_ONLY = ["tests/test_targets.py::test_a_recording_replays_its_actions_as_they_were_shown",
             "tests/test_rings.py::test_the_ledger_keeps_a_bounded_number_of_rings",
             "tests/test_rings.py::test_a_full_summary_still_reports_creds_that_differ[256]",
             "tests/test_identity.py::test_cli_says_which_path_and_prints_identities[probe_read]",
             "tests/test_hooks.py::test_start_line_says_which_ops_have_targets"]
RESULT_MARK = "@@uringwatch-result "


class Tally:
    """A pytest plugin that keeps the outcome counts and failed test ids."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.failed: list[str] = []

    def pytest_terminal_summary(self, terminalreporter):
        stats = terminalreporter.stats
        self.counts = {k: len(stats.get(k, [])) for k in ("passed", "failed", "error", "skipped")}
        self.failed = [r.nodeid for k in ("failed", "error") for r in stats.get(k, [])]


def probe() -> dict | None:
    p = subprocess.run([sys.executable, "-m", "uringwatch", "probe", "--json"],
                       capture_output=True, text=True)
    sys.stderr.write(p.stderr)
    return json.loads(p.stdout) if p.returncode == 0 else None


def load() -> dict:
    """What the tracer attaches here; libbpf's log if it cannot."""
    from uringwatch import Tracer, TracerError
    try:
        with Tracer() as t:
            f = t.features
            return {"hook": f["hook"], "bpf_loop": f["bpf_loop"], "task_btf": f["task_btf"],
                    "resolve": f["resolve"],
                    "object_sha256": t.object_sha256}
    except (TracerError, OSError) as e:     # LibbpfError is an OSError
        print(f"kernel_check: loading failed: {e}", file=sys.stderr)
        for line in getattr(e, "log_lines", []):
            print(f"kernel_check:   libbpf: {line}", file=sys.stderr)
        return {"error": str(e)}


def main() -> int:
    os.chdir(ROOT)
    # libbpf's warnings (the verifier log of a refused first attempt that
    # the tracer retries) only on request: -v
    logging.basicConfig(level=logging.DEBUG if "-v" in sys.argv else logging.ERROR,
                        format="kernel_check: %(message)s")
    import pytest
    t0 = time.monotonic()
    result = {"kernel": platform.release(), "probe": probe()}
    t1 = time.monotonic()
    result["load"] = load()
    t2 = time.monotonic()
    tally = Tally()
    # no cache provider: the guest sees the checkout read-only
    code = pytest.main(["-q", "-rfEs", "--color=no", "--durations=5", "-p", "no:cacheprovider",
                        *(f"--deselect={t}" for t in HOST_ONLY), *TESTS], plugins=[tally])
    result.update(tests=tally.counts, failed=tally.failed, pytest_exit=int(code),
                  seconds={"probe": round(t1 - t0, 1), "load": round(t2 - t1, 1),
                           "tests": round(time.monotonic() - t2, 1)})
    sys.stdout.flush()
    print(RESULT_MARK + json.dumps(result), flush=True)
    ok = result["probe"] and "error" not in result["load"] and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
