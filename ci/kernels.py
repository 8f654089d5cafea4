#!/usr/bin/env python3
"""Other Debian kernels for uringwatch's tests: fetch them, boot them.

    ci/kernels.py fetch [SUITE...]          download and unpack the kernels
    ci/kernels.py run KERNEL -- CMD...      run CMD inside KERNEL, exit with its code
    ci/kernels.py list                      the kernels and their cache state

KERNEL is a Debian suite (bullseye, bookworm, trixie, forky), its kernel
series (5.10, 6.1, 6.12, 7.2), or `host` for this machine's kernel, natively.
A guest boots under qemu's TCG (KVM guests hang on these machines) through
virtme-ng, which shares this machine's root file system read-only: the
checkout, its .venv and the BPF object built there are the ones the guest
runs. One CMD argument is a shell command line; several are an argv.

KERNEL-arm64 (bookworm-arm64, 6.1-arm64, ...) is that suite's arm64 kernel,
booted by qemu-system-aarch64 on the arm64 Debian root file system of
ci/arm64.py (this machine's files are x86_64: the guest sees only its own);
CMD runs there as root, in /.

Stdlib only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Outside the clone, so that every clone on this machine shares what was
# downloaded and built; each entry is checked before use and made again
# when absent or wrong.
CACHE_ROOT = Path(os.environ.get("URINGWATCH_CACHE", "/var/cache/uringwatch"))
CACHE = Path(os.environ.get("URINGWATCH_KERNEL_CACHE", CACHE_ROOT / "kernels"))
MIRROR = os.environ.get("URINGWATCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MODULES = Path("/usr/lib/modules")

# suite -> the kernel series its linux-image-amd64 (and -arm64) brings
SUITES = {"bullseye": "5.10", "bookworm": "6.1", "trixie": "6.12", "forky": "7.2"}
HOST_ARCH = "amd64"
# Debian architecture -> the suffix a kernel's name takes in this script
ARCH_SUFFIX = {"amd64": "", "arm64": "-arm64"}
APT_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "depmod": "kmod",
             "busybox": "busybox-static"}
RUN_TIMEOUT = 2400.0       # seconds for one `run` in a guest (ci/matrix uses it too)
VNG_VERSION = "1.42"       # pinned: its command line and console output are parsed here

EXIT_MARK = "@@uringwatch-exit="
EXIT_CODE = re.compile(rf"{re.escape(EXIT_MARK)}(\d+)")   # as the guest prints it
# Kernel log lines on the console: "[    1.234567] ..."
KLOG = re.compile(r"^\s*\[\s*\d+\.\d+\]")


class KernelError(Exception):
    """A kernel could not be fetched or booted: always a failure, never a skip."""
    started = True      # False: a guest that failed before its command started


def log(msg: str) -> None:
    print(f"kernels: {msg}", file=sys.stderr, flush=True)


# -- tools ----------------------------------------------------------------

def vng_path() -> Path:
    return CACHE / "vng" / "bin" / "vng"


def ensure_tools() -> None:
    """qemu, kmod and busybox from apt; virtme-ng from PyPI into its own
    venv under the cache (it needs no root and must not touch .venv)."""
    missing = sorted({pkg for cmd, pkg in APT_TOOLS.items() if not shutil.which(cmd)})
    if missing:
        log(f"installing {' '.join(missing)} (apt)")
        sh(["apt-get", "update", "-qq"])
        sh(["apt-get", "install", "-y", "-qq", *missing],
           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not vng_path().exists():
        log(f"installing virtme-ng {VNG_VERSION} (pip) into {vng_path().parent.parent}")
        sh([sys.executable, "-m", "venv", str(CACHE / "vng")])
        sh([str(CACHE / "vng" / "bin" / "pip"), "install", "-q",
            f"virtme-ng=={VNG_VERSION}"])


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs argv; a failure raises KernelError with its output."""
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if p.returncode:
        raise KernelError(f"{shlex.join(argv)} failed ({p.returncode}):\n"
                          f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p


# -- fetch ----------------------------------------------------------------

def apt_options(suite: str, arch: str = HOST_ARCH) -> list[str]:
    """A private apt world for one suite and architecture: its own sources
    list, package lists and cache, so the system's apt sources, state and
    architectures (dpkg --add-architecture) are untouched."""
    d = CACHE / (suite + ARCH_SUFFIX[arch]) / "apt"
    (d / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (d / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (d / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
    opts = ["-o", f"Dir::Etc::sourcelist={d / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={d / 'lists'}",
            "-o", f"Dir::Cache={d / 'cache'}",
            "-o", "Acquire::Languages=none",
            "-o", "APT::Get::List-Cleanup=0"]
    if arch != HOST_ARCH:
        # another architecture's packages, resolved as if it were the native
        # one; the empty status file keeps this machine's packages out of it
        opts += ["-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures={arch}",
                 "-o", "Dir::State::status=/dev/null"]
    return opts


def apt_update(suite: str, arch: str = HOST_ARCH) -> list[str]:
    """apt-get update in the private world; its options once it has lists."""
    opts = apt_options(suite, arch)
    lists = CACHE / (suite + ARCH_SUFFIX[arch]) / "apt" / "lists"
    log(f"{suite} {arch}: apt-get update (private lists)")
    # apt-get update exits 0 when it could fetch nothing; say so plainly.
    update = sh(["apt-get", *opts, "update"])
    if not any(lists.glob("*_Packages*")):
        raise KernelError(f"{suite}: could not fetch its package lists from {MIRROR} "
                          f"(set URINGWATCH_DEBIAN_MIRROR for another archive):\n"
                          f"{update.stdout[-1500:]}{update.stderr[-1500:]}")
    return opts


def resolve(suite: str, opts: list[str], arch: str = HOST_ARCH) -> str:
    """The versioned generic image package that linux-image-<arch> depends on
    (e.g. linux-image-6.1.0-50-amd64), not the -cloud flavour."""
    meta = f"linux-image-{arch}"
    show = sh(["apt-cache", *opts, "show", "--no-all-versions", meta]).stdout
    for line in show.splitlines():
        if line.startswith("Depends:"):
            for dep in line.split(":", 1)[1].split(","):
                name = dep.split()[0]
                if re.fullmatch(rf"linux-image-\S+-{arch}", name) and "cloud" not in name:
                    return name
    raise KernelError(f"{suite}: {meta} names no generic image:\n{show}")


def same_version_parts(package: str, version: str, opts: list[str]) -> list[str]:
    """From forky on, linux-image-<version> is itself a metapackage over
    linux-binary-<version> (vmlinuz), linux-modules-<version> and
    linux-base-<version>: those parts are downloaded too."""
    show = sh(["apt-cache", *opts, "show", "--no-all-versions", package]).stdout
    deps = next((line.split(":", 1)[1] for line in show.splitlines()
                 if line.startswith("Depends:")), "")
    names = [alt.split()[0] for dep in deps.split(",") for alt in dep.split("|")]
    return [n for n in names if re.fullmatch(rf"linux-[a-z]+-{re.escape(version)}", n)]


def fetch(suite: str, refresh: bool = False, arch: str = HOST_ARCH) -> dict:
    """Downloads, unpacks and installs one suite's kernel; returns its record.
    A complete cache entry is reused without touching the network. Another
    architecture's kernel is only unpacked: its modules are never loaded
    here, and its guest (ci/arm64.py) needs none."""
    d = CACHE / (suite + ARCH_SUFFIX[arch])
    record_file = d / "kernel.json"
    if not refresh and record_file.exists():
        rec = json.loads(record_file.read_text())
        if cached_intact(rec):
            if arch == HOST_ARCH:
                install_modules(rec)        # a fresh machine sharing the cache
            return {**rec, "fetch_s": 0.0, "cached": True}
        log(f"{suite}: the cached kernel is missing or changed: fetching it again")
    start = time.monotonic()
    opts = apt_update(suite, arch)
    package = resolve(suite, opts, arch)
    version = package.removeprefix("linux-image-")
    packages = [package, *same_version_parts(package, version, opts)]
    log(f"{suite}: downloading {' '.join(packages)}")
    debs = d / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    sh(["apt-get", *opts, "download", *packages], cwd=debs)
    tree = d / "root"
    shutil.rmtree(tree, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        sh(["dpkg", "-x", str(deb), str(tree)])
    shutil.rmtree(debs)         # unpacked: the packages themselves are not needed again
    # boot/ until trixie; forky's linux-binary puts it beside the modules
    vmlinuz = next((p for p in (tree / "boot" / f"vmlinuz-{version}",
                                tree / "usr/lib/modules" / version / "vmlinuz") if p.exists()),
                   None)
    if vmlinuz is None:
        raise KernelError(f"{suite}: {', '.join(packages)} hold no vmlinuz for {version}")
    rec = {"suite": suite, "series": SUITES[suite], "arch": arch, "version": version,
           "packages": packages, "vmlinuz": str(vmlinuz), "tree": str(tree),
           "vmlinuz_sha256": sha256(vmlinuz)}
    if arch == HOST_ARCH:
        install_modules(rec)
    record_file.write_text(json.dumps(rec, indent=1) + "\n")
    return {**rec, "fetch_s": round(time.monotonic() - start, 1), "cached": False}


def sha256(path: Path) -> str:
    import hashlib
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached_intact(rec: dict) -> bool:
    """Whether a cached kernel is the one its record was written for."""
    vmlinuz = Path(rec["vmlinuz"])
    return vmlinuz.exists() and rec.get("vmlinuz_sha256") == sha256(vmlinuz)


def install_modules(rec: dict) -> None:
    """virtme-ng builds the guest's initramfs (virtio, 9p) from
    /usr/lib/modules/<version>, so the modules go there, with depmod."""
    version, tree = rec["version"], Path(rec["tree"])
    target = MODULES / version
    if (target / "modules.dep").exists():
        return
    # usr-merged packages (trixie on) ship usr/lib/modules; older ones lib/modules
    src = next((p for p in (tree / "usr/lib/modules" / version, tree / "lib/modules" / version)
                if p.is_dir()), None)
    if src is None:
        raise KernelError(f"{rec['suite']}: no lib/modules/{version} in {tree}")
    log(f"{rec['suite']}: installing modules into {target}")
    shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
    sh(["depmod", version])


def parse_kernel(name: str) -> tuple[str, str]:
    """(suite, Debian architecture) of a kernel name: bookworm, 6.1,
    bookworm-arm64, 6.1-arm64."""
    arch = next((a for a, sfx in ARCH_SUFFIX.items() if sfx and name.endswith(sfx)), HOST_ARCH)
    base = name.removesuffix(ARCH_SUFFIX[arch])
    suite = base if base in SUITES else next((s for s, v in SUITES.items() if v == base), None)
    if suite is None:
        raise KernelError(f"unknown kernel {name!r}: one of host, "
                          f"{', '.join(SUITES)} or {', '.join(SUITES.values())}, "
                          f"each optionally with -arm64")
    return suite, arch


def kernel_record(name: str) -> dict:
    """The record of a kernel name, fetched if it is not cached."""
    suite, arch = parse_kernel(name)
    return fetch(suite, arch=arch)


# -- run ------------------------------------------------------------------

# After the marker: wait until the console has sent everything. When
# virtme-ng-init misses its virtio-serial ports ("console fallback", seen
# on 6.1) the output goes through the emulated serial console, and the
# guest powers off as soon as the command ends, cutting off what is
# still queued there.
# A guest prints its first kernel line within seconds (40 s at worst seen
# here, with other guests sharing the cores); silence past this is a kernel
# that will not boot, not a slow one.
BOOT_TIMEOUT = 120
# A kernel that panicked never prints the exit marker. An early panic
# ("PANIC: early exception 0x06", once in TCG at 7.2's boot) comes after
# kernel lines that stopped the boot timer: without this the run would
# hang until its timeout (40 minutes).
PANIC = re.compile(r"PANIC: early exception|Kernel panic - not syncing")
# printed by the guest's shell before the command: a guest that failed
# before it did not run the command, and is booted once more (boot)
START_MARK = "@@uringwatch-start"
DRAIN = 'python3 -c "import termios; termios.tcdrain(1)" 2>/dev/null || sleep 1'


def guest_script(command: str, cwd: Path) -> str:
    """What the guest's shell runs: kernel messages off the console (in the
    console fallback they would land inside the command's lines), the
    mounts uringwatch needs (it would mount tracefs itself; bpffs is for
    anything pinning), the command, and a marker with its exit code:
    virtme-ng's own exit code is not the command's on every path."""
    return (f"echo {START_MARK}; dmesg -n 1;"
            f" mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing;"
            f" mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf;"
            f" cd {shlex.quote(str(cwd))} && {{ {command}; }};"
            f" echo {EXIT_MARK}$?; {DRAIN}")


def boot(name: str, command: str, timeout: float = 600, cwd: Path = ROOT,
         memory: str = "1G", cpus: int = 2, echo: bool = True) -> tuple[int, str]:
    """Runs a shell command inside kernel `name` (or natively for "host").
    Returns (the command's exit code, its output without kernel lines).
    Output is echoed live unless echo is False. A guest that never prints
    the exit marker (panic, hang, timeout) raises KernelError."""
    if name == "host":
        code, out, _ = stream(["sh", "-c", command], timeout, echo, cwd=cwd)
        return code, out
    rec = kernel_record(name)
    if rec.get("arch", HOST_ARCH) != HOST_ARCH:
        import arm64    # ci/arm64.py: its own root file system and qemu
        return arm64.boot(rec, command, timeout=timeout, echo=echo)
    ensure_tools()
    # One host thread for all vCPUs: with multi-threaded TCG, a vCPU can
    # run a stale int3 while another patches a static key, and the guest
    # panics ("Oops: int3"; 6.12 did so at boot in CI, and in 3 of 3 runs
    # flipping a tracepoint 3000 times; single-threaded, 0 of 3).
    argv = [str(vng_path()), "--verbose", "--run", rec["vmlinuz"], "--disable-kvm",
            "--force-9p", "--memory", memory, "--cpus", str(cpus),
            "--qemu-opts=-accel tcg,thread=single",
            # the guest's /var/cache is its own (a tmpfs): the cache is shared
            # read-only for what the tests run from it (ci/liburing.py)
            *(["--rodir", str(CACHE_ROOT)] if CACHE_ROOT.is_dir() else []),
            # a clone under /var or /run would be hidden likewise (virtme-init
            # mounts tmpfs on /var/tmp, /var/cache, /run, ...): shared
            *(["--rwdir", str(ROOT)] if ROOT.parts[1:2] in (("var",), ("run",)) else []),
            "--exec", guest_script(command, cwd)]
    # vng starts virtme-run from PATH: its venv's bin must be on it
    env = {**os.environ, "PATH": f"{vng_path().parent}:{os.environ.get('PATH', '')}"}
    guest = f"{rec['suite']} ({rec['version']})"
    deadline = time.monotonic() + timeout
    for attempt in (1, 2):
        try:
            code, out, klog = stream(argv, deadline - time.monotonic(), echo, cwd=cwd, env=env,
                                     filter_klog=True, boot_timeout=min(timeout, BOOT_TIMEOUT))
            return guest_result(guest, f"vng exit {code}", out, klog)
        except KernelError as e:
            if attempt == 2 or e.started or deadline - time.monotonic() < BOOT_TIMEOUT:
                raise
            print(f"kernels: {guest} failed before the command started; booting it once "
                  f"more. It said: {str(e).splitlines()[0]}", file=sys.stderr)
    raise AssertionError("unreachable")


def guest_result(guest: str, runner: str, out: str, klog: list[str]) -> tuple[int, str]:
    """(the command's exit code, its output) from a guest's output, which
    ends with EXIT_MARK and the code; KernelError if the mark never came."""
    m = EXIT_CODE.search(out)
    if not m:
        raise _guest_error(f"{guest}: no exit marker from the guest ({runner}): it did not "
                           f"boot or the command was cut off; last kernel lines:\n"
                           f"{''.join(klog[-25:])}last output:\n{out[-3000:]}", out)
    return int(m.group(1)), out[:m.start()].replace(START_MARK + "\n", "", 1)


def _guest_error(message: str, out: str) -> KernelError:
    e = KernelError(message)
    e.started = f"\n{START_MARK}\n" in f"\n{out}"    # its own line, not the script's text
    return e


def stream(argv: list[str], timeout: float, echo: bool, cwd: Path, env: dict | None = None,
           filter_klog: bool = False, boot_timeout: float | None = None,
           any_line_boots: bool = False) -> tuple[int, str, list[str]]:
    """Runs argv in its own process group, echoing and collecting its
    output line by line; kills the group at the timeout, or at boot_timeout
    if no kernel line (with any_line_boots, no line at all: a quiet kernel
    whose console only the guest writes) came by then. Returns the exit
    code, the output, and the kernel log lines filtered out of it."""
    start = time.monotonic()
    deadline = start + timeout
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True, errors="replace",
                         start_new_session=True)
    out, klog = [], []
    timer = _Killer(p, deadline)
    boot = _Killer(p, start + boot_timeout) if boot_timeout else None
    panic, ended = None, False
    try:
        for line in p.stdout:
            # after the marker with its code, a panic is the guest's end
            ended = ended or EXIT_CODE.search(line) is not None
            if filter_klog and not ended and panic is None and PANIC.search(line):
                panic = line.strip()
                timer.fire()        # it will print nothing more of use
            if filter_klog and KLOG.match(line):
                if boot:
                    boot.cancel()
                klog.append(line)
                continue
            out.append(line)
            if boot and any_line_boots:
                boot.cancel()
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
    finally:
        p.wait()
        timer.cancel()
        if boot:
            boot.cancel()
    said = "".join(out)
    if panic:
        raise _guest_error(f"the kernel panicked: {panic}; last kernel lines:\n"
                           f"{''.join(klog[-10:])}last output:\n{said[-3000:]}", said)
    if boot and boot.fired:
        raise _guest_error(f"did not boot: no kernel line in {boot_timeout:.0f} s from "
                           f"{shlex.join(argv[:4])} ...; last output:\n{said[-3000:]}", said)
    if timer.fired:
        raise _guest_error(f"timed out after {timeout:.0f} s: {shlex.join(argv[:4])} ...; "
                           f"last kernel lines:\n{''.join(klog[-10:])}"
                           f"last output:\n{said[-3000:]}", said)
    return p.returncode, "".join(out), klog


class _Killer:
    """Kills a process group at a deadline (qemu under vng ignores a
    closed stdin, and a hung guest never ends by itself)."""

    def __init__(self, proc: subprocess.Popen, deadline: float):
        import threading
        self.fired = False
        self._proc = proc
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._kill)
        self._timer.daemon = True
        self._timer.start()

    def fire(self) -> None:
        """Kills it now (and the timer is spent)."""
        self._timer.cancel()
        self._kill()

    def _kill(self) -> None:
        self.fired = True
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


# -- command line ---------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ci/kernels.py", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the kernels into the cache")
    f.add_argument("suites", nargs="*", default=list(SUITES), metavar="SUITE")
    f.add_argument("--refresh", action="store_true",
                   help="ask the archive again even when a kernel is cached")
    r = sub.add_parser("run", help="run a command inside a kernel")
    r.add_argument("kernel")
    # A guest's whole suite took 468 s quiet and over 1,100 s under load:
    # the matrix's per-kernel limit, sized for a machine 5 times slower.
    r.add_argument("--timeout", type=float, default=RUN_TIMEOUT,
                   help=f"seconds (default {RUN_TIMEOUT:.0f})")
    sub.add_parser("list", help="the kernels and whether they are cached")
    argv = sys.argv[1:] if argv is None else argv
    # everything after the first -- is the command, options included
    split = argv.index("--") if "--" in argv else len(argv)
    argv, cmd = argv[:split], argv[split + 1:]
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fetch":
            if os.geteuid() != 0:
                raise KernelError("fetch installs modules into /usr/lib/modules: run as root")
            ensure_tools()
            for name in args.suites:
                suite, arch = parse_kernel(name)
                if name not in (suite, suite + ARCH_SUFFIX[arch]):
                    raise KernelError(f"unknown suite {name!r}: one of {', '.join(SUITES)}, "
                                      f"each optionally with -arm64")
                rec = fetch(suite, args.refresh, arch)
                how = "cached" if rec["cached"] else f"fetched in {rec['fetch_s']} s"
                print(f"{name:<15} {rec['version']:<24} {how}")
            return 0
        if args.cmd == "list":
            for arch, sfx in ARCH_SUFFIX.items():
                for suite, series in SUITES.items():
                    f = CACHE / (suite + sfx) / "kernel.json"
                    state = json.loads(f.read_text())["version"] if f.exists() else "not fetched"
                    print(f"{suite + sfx:<15} {series:<5} {state}")
            return 0
        if not cmd:
            ap.error("run needs a command after --")
        command = cmd[0] if len(cmd) == 1 else shlex.join(cmd)
        code, _ = boot(args.kernel, command, timeout=args.timeout)
        return code
    except KernelError as e:
        log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
