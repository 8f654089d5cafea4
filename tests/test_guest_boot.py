"""The guest runner's failures (ci/kernels.py): a kernel that panics ends
its run at once, not at the run's timeout, and says whether the guest had
started the command (a guest that had not is booted once more). The
console is a real process printing what a guest's console printed."""

import os
import sys

import pytest

from helpers import REPO

sys.path.insert(0, os.path.join(REPO, "ci"))
import kernels  # noqa: E402

EARLY_PANIC = "PANIC: early exception 0x06 IP 10:ffffffff86a4a19d error 0 cr2 0xff14974113a01000"


def console(*lines: str) -> list[str]:
    """A console that prints lines, then hangs as a panicked guest does."""
    script = "".join(f"echo {line!r}; " for line in lines) + "exec sleep 600"
    return ["sh", "-c", script]


@pytest.mark.parametrize("started", [False, True])
def test_a_panic_ends_the_run_and_says_whether_the_command_started(started):
    lines = ["[    0.000000] Linux version 7.2.12", "Memory KASLR using RDRAND RDTSC..."]
    if started:
        lines.append(kernels.START_MARK)
    with pytest.raises(kernels.KernelError, match="the kernel panicked: PANIC: early") as e:
        kernels.stream(console(*lines, EARLY_PANIC), timeout=300, echo=False,
                       cwd=kernels.ROOT, filter_klog=True, boot_timeout=120)
    assert e.value.started is started


def test_a_panic_in_the_kernel_log_ends_the_run_too():
    with pytest.raises(kernels.KernelError, match="Kernel panic - not syncing"):
        kernels.stream(console("[    1.000000] Kernel panic - not syncing: No working init"),
                       timeout=300, echo=False, cwd=kernels.ROOT, filter_klog=True,
                       boot_timeout=120)


def test_no_exit_marker_says_whether_the_command_started():
    for out, started in (("booting\n", False), (f"{kernels.START_MARK}\nhalf a line", True)):
        with pytest.raises(kernels.KernelError, match="no exit marker") as e:
            kernels.guest_result("7.2", "vng exit 1", out, [])
        assert e.value.started is started
    code, out = kernels.guest_result(
        "7.2", "vng exit 0", f"{kernels.START_MARK}\nok\n{kernels.EXIT_MARK}3\n", [])
    assert code == 3 and out == "ok\n"     # the guest's own lines only


def test_a_panic_after_the_exit_marker_is_the_guests_end():
    """A guest whose init ends after the command (arm64's, if its poweroff
    fails) panics: the run has its result all the same."""
    code, out, _ = kernels.stream(
        ["sh", "-c", f"echo {kernels.START_MARK}; echo ok; echo {kernels.EXIT_MARK}0; "
                     "echo '[    9.000000] Kernel panic - not syncing: Attempted to kill init!'"],
        timeout=300, echo=False, cwd=kernels.ROOT, filter_klog=True, boot_timeout=120)
    assert kernels.guest_result("arm64", f"qemu exit {code}", out, []) == (0, "ok\n")
