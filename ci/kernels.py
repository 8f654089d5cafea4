#!/usr/bin/env python3
"""Kernel matrix: Debian kernels booted under qemu (TCG) by virtme-ng, on this root fs.

  ci/kernels.py fetch [SUITE...]                   download and install (default: all)
  ci/kernels.py list                               suite, nominal version, version, cached
  ci/kernels.py run [--timeout S] KERNEL -- CMD...  run the sh line CMD in the repo on KERNEL

KERNEL: bullseye, bookworm, trixie, forky, their versions (5.10, 6.1, 6.12, 7.2 or in full),
or "host" (no VM). `run` prints CMD's stdout and stderr (merged; kernel log dropped) and exits
with CMD's status; when it cannot (no kernel, no boot, timeout), with one "kernels: error:"
line and status 125. As root. Cache: $URINGWATCH_KERNEL_CACHE or .cache/kernels/ in the repo.
"""
import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("URINGWATCH_KERNEL_CACHE") or REPO / ".cache" / "kernels")
def system_mirror() -> str:
    """The Debian archive this machine's apt already uses (deb822 or one-line form)."""
    for path in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(
            Path("/etc/apt/sources.list.d").glob("*.sources")):
        if not path.is_file():
            continue
        for m in re.finditer(r"(?m)^(?:URIs:\s+|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?(?:\s|$)",
                             path.read_text()):
            return m.group(1)
    raise SystemExit("kernels: error: no Debian archive in /etc/apt; "
                     "set URINGWATCH_DEBIAN_MIRROR")


MIRROR = os.environ.get("URINGWATCH_DEBIAN_MIRROR") or system_mirror()
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITES = {"bullseye": "5.10", "bookworm": "6.1", "trixie": "6.12", "forky": "7.2"}
APT_PACKAGES = ["qemu-system-x86", "kmod", "busybox-static"]
START_MARK, RC_MARK = "__START__", "__RC__="
FAILED = 125  # our own failure, apart from the command's statuses, as timeout(1) does
KLOG = re.compile(r"^\[\s*\d+\.\d+\]")  # "[    1.234567] ...": a kernel console line
# The guest boots with tracefs and securityfs only; libbpf reads tracepoint ids from
# tracefs or debugfs, and pinning needs bpffs. Each is mounted if missing.
GUEST_MOUNTS = [("tracefs", "/sys/kernel/tracing"), ("debugfs", "/sys/kernel/debug"),
                ("bpf", "/sys/fs/bpf"), ("securityfs", "/sys/kernel/security")]


class Failure(Exception):
    """One line for stderr, then exit status FAILED."""


def sh(*argv, **kw):
    """Run a helper command; its failure is ours, told by its last stderr line."""
    proc = subprocess.run(argv, check=False, text=True, capture_output=True, **kw)
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise Failure(f"{' '.join(argv[:2])}: {tail}")
    return proc.stdout


def note(msg):
    print(f"kernels: {msg}", file=sys.stderr, flush=True)


def vng_path():
    venv_vng = REPO / ".venv" / "bin" / "vng"
    return str(venv_vng) if venv_vng.exists() else shutil.which("vng")


def ensure_tools():
    """Install what a fresh machine lacks; checking first keeps reruns offline."""
    missing = [p for p in APT_PACKAGES if "ok installed" not in subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], check=False, text=True,
        capture_output=True).stdout]
    if missing:
        note(f"installing {' '.join(missing)}")
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", *missing,
           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not vng_path():
        note("installing virtme-ng")
        venv_py = REPO / ".venv" / "bin" / "python"
        # Debian's own pip refuses without --break-system-packages (PEP 668).
        pip = [venv_py] if venv_py.exists() else [sys.executable, "--break-system-packages"]
        sh(str(pip[0]), "-m", "pip", "install", "-q", *pip[1:], "virtme-ng")
    if not vng_path():
        raise Failure("virtme-ng is installed but no vng command is on PATH")


def cached_version(suite):
    f = CACHE / suite / "version"
    return f.read_text().strip() if f.exists() else None


def is_ready(suite):
    ver = cached_version(suite)
    return bool(ver) and (CACHE / suite / f"vmlinuz-{ver}").exists() and \
        Path(f"/usr/lib/modules/{ver}/modules.dep").exists()


def apt_options(suite):
    """Private sources, lists, status and cache, so the system's apt stays untouched."""
    apt = CACHE / suite / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache").mkdir(exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb [arch=amd64 signed-by={KEYRING}] {MIRROR} {suite} main\n")
    (apt / "status").touch()  # empty: candidates come from this suite alone
    opts = {"Dir::Etc::sourcelist": apt / "sources.list", "Dir::Etc::sourceparts": "-",
            "Dir::State::Lists": apt / "lists", "Dir::State::status": apt / "status",
            "Dir::Cache": apt / "cache"}
    return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]


def depends(opts, pkg):
    info = sh("apt-cache", *opts, "show", "--no-all-versions", pkg)
    line = re.search(r"^Depends: (.*)$", info, re.MULTILINE)
    return re.findall(r"[\w.+-]+", re.sub(r"\(.*?\)", "", line.group(1))) if line else []


def kernel_packages(suite, opts):
    """The metapackage linux-image-amd64 depends on the versioned image; from forky
    on, that image is empty and depends on linux-{base,binary,modules}-<ver>."""
    image = next((d for d in depends(opts, "linux-image-amd64")
                  if re.fullmatch(r"linux-image-\S+-amd64", d)), None)
    if not image:
        raise Failure(f"{suite}: no versioned image in linux-image-amd64's Depends")
    ver = image.removeprefix("linux-image-")
    return ver, [image] + [d for d in depends(opts, image) if d.endswith("-" + ver)]


def fetch(suite, quiet=False):
    """Download, unpack and install one suite's kernel, unless that is done."""
    if is_ready(suite):
        return quiet or note(f"{suite}: {cached_version(suite)} already cached")
    start, d, ver = time.monotonic(), CACHE / suite, cached_version(suite)
    debs = sorted(d.glob(f"linux-*-{ver}_*.deb")) if ver else []
    if not debs:
        opts = apt_options(suite)
        sh("apt-get", *opts, "-qq", "update")
        ver, pkgs = kernel_packages(suite, opts)
        sh("apt-get", *opts, "-qq", "download", *pkgs, cwd=d)
        debs = sorted(d.glob(f"linux-*-{ver}_*.deb"))
    install(d, ver, debs)
    (d / "version").write_text(ver + "\n")  # last: marks the cache entry complete
    note(f"{suite}: {ver} ready in {time.monotonic() - start:.1f} s")


def install(d, ver, debs):
    """vmlinuz and config stay in the cache; modules go where the guest and virtme-ng's
    initramfs builder look for them, /usr/lib/modules/<ver>."""
    def first(*paths):
        found = next((p for p in paths if p.exists()), None)
        if not found:
            raise Failure(f"{ver}: no {paths[0].name} in {' '.join(p.name for p in debs)}")
        return found
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        for deb in debs:
            sh("dpkg", "-x", str(deb), tmp)
        mods = first(Path(tmp, "usr/lib/modules", ver), Path(tmp, "lib/modules", ver))
        # In /boot up to trixie, in the modules folder from forky on.
        for name, alt in ((f"vmlinuz-{ver}", "vmlinuz"), (f"config-{ver}", "config")):
            shutil.copy(first(Path(tmp, "boot", name), mods / alt), d / name)
        dest = Path("/usr/lib/modules", ver)
        if (dest / "modules.dep").exists():
            return  # there already, maybe from another checkout and in use: leave it
        shutil.rmtree(dest, ignore_errors=True)  # a half-done earlier attempt
        shutil.move(mods, dest)
    sh("depmod", "-a", ver)


def resolve(kernel):
    """A suite, its nominal version or its full cached version -> the suite."""
    for suite, nominal in SUITES.items():
        if kernel in (suite, nominal, cached_version(suite)):
            return suite
    raise Failure(f"unknown kernel {kernel!r}: use host, {', '.join(SUITES)} or a version")


def guest_script(cmd):
    """Mounts and a quiet console, then CMD between two markers: boot chatter comes
    before START, and the status after RC is the command's own (vng's is not)."""
    return "\n".join([
        *(f"grep -qs ' {p} ' /proc/mounts || mount -t {t} nodev {p}" for t, p in GUEST_MOUNTS),
        "echo 1 >/proc/sys/kernel/printk",  # kernel messages would interleave with output
        f"echo {START_MARK}",
        f"cd {shlex.quote(str(REPO))} && sh -c {shlex.quote(cmd)} </dev/null",
        f"echo {RC_MARK}$?",
        # Power-off does not wait for the serial line: drain it (tcsetattr with
        # TCSADRAIN), or the last lines, the marker among them, can be lost.
        'stty "$(stty -g)" 2>/dev/null', ""])


def run_host(cmd, timeout):
    # stderr merged into stdout, as the guest's serial console merges them
    proc = subprocess.Popen(["sh", "-c", cmd], cwd=REPO, stdin=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"host: timed out after {timeout} s") from None
    finally:
        stop(proc)


def run_guest(suite, cmd, timeout):
    ensure_tools()
    fetch(suite, quiet=True)
    ver = cached_version(suite)
    # vng puts --exec on the kernel command line, and one over 2 KiB panics the guest
    # at boot: pass a short "sh FILE" instead, FILE seen through the shared root.
    with tempfile.NamedTemporaryFile("w", dir=CACHE, prefix="run-", suffix=".sh") as script:
        script.write(guest_script(cmd))
        script.flush()
        argv = [vng_path(), "--verbose", "--run", str(CACHE / suite / f"vmlinuz-{ver}"),
                "--disable-kvm", "--force-9p", "--memory", "1G", "--exec", f"sh {script.name}"]
        return boot(f"{suite} ({ver})", argv, timeout)


def stop(proc):
    """Kill the process group (a command's children, or vng and its qemu) that is left
    over after a timeout or an interrupt."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def boot(name, argv, timeout):
    """Run vng, print the command's lines, return the status from the marker."""
    # vng starts virtme-run from PATH: find it beside vng (maybe in .venv).
    env = {**os.environ, "PATH": f"{Path(argv[0]).parent}:{os.environ.get('PATH', '')}"}
    # In its own session, so a timeout stops qemu as well as vng.
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)
    timer = threading.Timer(timeout, stop, (proc,))
    timer.start()
    started, rc, tail = False, None, []
    try:
        for line in proc.stdout:
            line = line.rstrip("\r\n")
            if line == START_MARK:
                started = True
            elif started and line.startswith(RC_MARK) and line[len(RC_MARK):].isdigit():
                rc, started = int(line[len(RC_MARK):]), False
            elif started and not KLOG.match(line):
                print(line, flush=True)
            else:
                tail = [*tail[-2:], line]
        proc.wait()
    finally:
        timer.cancel()
        stop(proc)
    if rc is None:
        why = f"timed out after {timeout} s" if proc.returncode == -signal.SIGKILL \
            else f"vng exited {proc.returncode}"
        stage = "the command gave no status" if started else "the guest never reached the command"
        raise Failure(f"{name}: {stage}, {why}; last lines: {' | '.join(tail)[-300:]}")
    return rc


def main(argv):
    ap = argparse.ArgumentParser(prog="ci/kernels.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("fetch").add_argument("suites", nargs="*", metavar="SUITE")
    sub.add_parser("list")
    run = sub.add_parser("run")
    run.add_argument("--timeout", type=int, default=300, help="seconds, boot included")
    run.add_argument("kernel", metavar="KERNEL")
    run.add_argument("cmd", nargs="+", metavar="CMD", help="after --, joined by spaces for sh")
    args = ap.parse_args(argv)
    try:
        if args.what == "list":
            for suite, nominal in SUITES.items():
                state = "cached" if is_ready(suite) else "missing"
                print(f"{suite:9} {nominal:5} {cached_version(suite) or '-':24} {state}")
            return 0
        if os.geteuid() != 0:
            raise Failure("run me as root (modules, depmod, BPF)")
        if args.what == "fetch":
            suites = [resolve(s) for s in args.suites] or list(SUITES)
            ensure_tools()
            for suite in suites:
                fetch(suite)
            return 0
        if args.kernel == "host":
            return run_host(" ".join(args.cmd), args.timeout)
        return run_guest(resolve(args.kernel), " ".join(args.cmd), args.timeout)
    except Failure as e:
        print(f"kernels: error: {e}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:  # the VM or command is stopped already (see stop)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
