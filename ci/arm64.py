#!/usr/bin/env python3
"""An arm64 Debian guest on this x86_64 machine: root file system, boot.

    ci/arm64.py rootfs                      make (or reuse) the cached rootfs
    ci/arm64.py libs                        arm64 libbpf, libelf, zlib for the wheel
    ci/kernels.py run bookworm-arm64 -- CMD CMD in the guest (boot() below)

The root file system is Debian 12 arm64 (debootstrap minbase + python3 +
python3-venv), made once into /var/cache/uringwatch/arm64/ and packed as an
initramfs: the guest runs from RAM with no block or 9p driver, so Debian's
kernel boots it with none of its modules. Per run, a second archive is appended to it with
/init and the run's files (the wheels, the scripts).

debootstrap runs its first stage only (download and unpack, nothing of
arm64 is run), and the packages it leaves for the second are unpacked too:
no maintainer script runs, so nothing needs an arm64 emulator here and the
host's binfmt table is never touched. The guest is qemu-system-aarch64
under TCG (-M virt), console on its serial port.

Stdlib only, like ci/kernels.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels  # noqa: E402
from kernels import KernelError, log, sh  # noqa: E402

CACHE = Path(os.environ.get("URINGWATCH_ARM64_CACHE", kernels.CACHE_ROOT / "arm64"))
SUITE = "bookworm"
PACKAGES = "python3,python3-venv"
RECIPE = (f"debootstrap --foreign --arch=arm64 --variant=minbase --include={PACKAGES} {SUITE}"
          f", unpacked, trimmed")
# Never needed in the guest: documentation, translations, apt's downloads.
TRIM = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
        "var/cache/apt/archives", "var/lib/apt/lists"]

QEMU = "qemu-system-aarch64"
# -cpu max with the cheap pointer-authentication algorithm: the architected
# one (QARMA) costs TCG dearly on every function return.
CPU = "max,pauth-impdef=on"
MEMORY = "2G"
CPUS = 2                       # the TOCTOU race needs a writer on another CPU
EXIT_MARK = kernels.EXIT_MARK
FILE_MARK = "@@uringwatch-file="


LIBS = ["libbpf1", "libelf1", "zlib1g"]     # what bundle/ ships, as Debian packages


def libs_root() -> Path:
    """Debian 12's arm64 libbpf1, libelf1 and zlib1g unpacked into one
    tree, for the aarch64 wheel (bundle/copy-libs.py --root), with
    PACKAGES.json: each package's version and files."""
    root = CACHE / "libs"
    manifest = root / "PACKAGES.json"
    if manifest.exists():
        packages = json.loads(manifest.read_text())
        if sorted(packages) == sorted(LIBS) and all(
                (root / f.lstrip("/")).exists() or (root / f.lstrip("/")).is_symlink()
                for p in packages.values() for f in p["files"]):
            return root
    opts = kernels.apt_update(SUITE, "arm64")
    shutil.rmtree(root, ignore_errors=True)
    debs = CACHE / "libs-debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    sh(["apt-get", *opts, "download", *LIBS], cwd=debs)
    packages = {}
    for deb in sorted(debs.glob("*.deb")):
        sh(["dpkg", "-x", str(deb), str(root)])
        name, version = sh(["dpkg-deb", "-f", str(deb), "Package", "Version"]).stdout.split("\n")[:2]
        files = [re.search(r" \.(/\S*)( -> .*)?$", line).group(1) for line in
                 sh(["dpkg-deb", "-c", str(deb)]).stdout.splitlines()]
        packages[name.split(": ", 1)[1]] = {"version": version.split(": ", 1)[1], "files": files}
    shutil.rmtree(debs)
    manifest.write_text(json.dumps(packages, indent=1) + "\n")
    return root


def debootstrap(target: Path, log_file: Path) -> None:
    """debootstrap's first stage only, which downloads and unpacks without
    running anything of arm64, then every package it downloaded unpacked
    too: no maintainer script runs (under emulation they took 8 to 18
    minutes, most of a cold CI run), and the guest needs none of what they
    make beyond the accounts, copied from base-passwd's masters."""
    with open(log_file, "w") as out:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private",
                            "debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
                            f"--include={PACKAGES}", SUITE, str(target), kernels.MIRROR],
                           stdout=out, stderr=subprocess.STDOUT)
    if r.returncode:
        raise KernelError(f"debootstrap failed ({r.returncode}), see {log_file}:\n"
                          f"{log_file.read_text()[-2000:]}")
    for deb in sorted((target / "var/cache/apt/archives").glob("*.deb")):
        sh(["dpkg", "-x", str(deb), str(target)])
    for name in ("passwd", "group"):
        shutil.copy(target / "usr/share/base-passwd" / f"{name}.master", target / "etc" / name)
    shutil.rmtree(target / "debootstrap")


def rootfs() -> Path:
    """The cached root file system as a newc cpio archive; made from
    nothing when absent or when its recipe changed."""
    archive, recipe = CACHE / "rootfs.cpio", CACHE / "rootfs.recipe"
    # the recipe's line, then the archive's sha256: both must match
    if archive.exists() and recipe.exists() and \
            recipe.read_text() == f"{RECIPE}\n{kernels.sha256(archive)}\n":
        return archive
    start = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    tree = CACHE / "rootfs.new"
    shutil.rmtree(tree, ignore_errors=True)
    log(f"arm64: no cached rootfs: {RECIPE}")
    debootstrap(tree, CACHE / "debootstrap.log")
    for rel in TRIM:
        shutil.rmtree(tree / rel, ignore_errors=True)
    write_cpio(archive, tree)
    shutil.rmtree(tree)
    recipe.write_text(f"{RECIPE}\n{kernels.sha256(archive)}\n")
    log(f"arm64: rootfs made in {time.monotonic() - start:.0f} s, "
        f"{archive.stat().st_size >> 20} MiB")
    return archive


# -- initramfs ------------------------------------------------------------

def _cpio_entry(out, name: str, mode: int, data: bytes = b"", ino: int = 0) -> None:
    """One newc entry; times and owners zeroed (root), so equal trees give
    equal archives."""
    name_b = name.encode() + b"\0"
    head = b"070701" + b"".join(b"%08X" % v for v in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
    out.write(head + name_b + b"\0" * (-(110 + len(name_b)) % 4))
    out.write(data + b"\0" * (-len(data) % 4))


def write_cpio(archive: Path, tree: Path, extra: dict[str, tuple[int, bytes]] | None = None
               ) -> None:
    """tree (files, directories, symlinks) and extra {name: (mode, data)}
    as one newc archive. Hard links become copies; devices are left out
    (the guest mounts devtmpfs); os.walk lists a symlink to a directory
    among the directories without entering it."""
    tmp = archive.with_suffix(".tmp")
    ino = 1
    with open(tmp, "wb") as out:
        if tree is not None:
            for dirpath, dirnames, filenames in os.walk(tree):
                dirnames.sort()
                for name in [*dirnames, *sorted(filenames)]:
                    path = Path(dirpath) / name
                    rel = str(path.relative_to(tree))
                    st = path.lstat()
                    if path.is_symlink():
                        _cpio_entry(out, rel, st.st_mode, os.readlink(path).encode(), ino)
                    elif path.is_dir():
                        _cpio_entry(out, rel, st.st_mode, b"", ino)
                    elif path.is_file():
                        _cpio_entry(out, rel, st.st_mode, path.read_bytes(), ino)
                    ino += 1
        for name, (mode, data) in sorted((extra or {}).items()):
            _cpio_entry(out, name, mode, data, ino)
            ino += 1
        _cpio_entry(out, "TRAILER!!!", 0)
    tmp.rename(archive)


INIT = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/shm /tmp && mount -t tmpfs tmpfs /dev/shm
echo 1 >/proc/sys/kernel/printk
cd /
sh /run/command.sh
echo "{mark}$?"
echo o >/proc/sysrq-trigger
sleep 10
"""


# -- boot -----------------------------------------------------------------

def boot(rec: dict, command: str, timeout: float = 600, echo: bool = True,
         files: dict[str, bytes] | None = None) -> tuple[int, str]:
    """Runs a shell command as root in the arm64 guest booted on kernel
    record rec (ci/kernels.py), with files {guest path: bytes} added.
    Returns (its exit code, its console output); like kernels.boot, a guest
    that never prints the exit marker raises KernelError."""
    if not shutil.which(QEMU):
        log("installing qemu-system-arm (apt)")
        sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-arm"],
           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    base = rootfs()
    with tempfile.TemporaryDirectory(prefix="uringwatch-arm64.") as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        extra = {"init": (0o100755, INIT.format(mark=EXIT_MARK).encode()),
                 "run/command.sh": (0o100755, command.encode() + b"\n")}
        for name, data in (files or {}).items():
            extra[name.lstrip("/")] = (0o100644, data)
        # parents of the extra files, so the kernel can create them
        for name in list(extra):
            parts = Path(name).parts[:-1]
            for i in range(1, len(parts) + 1):
                extra.setdefault(str(Path(*parts[:i])), (0o040755, b""))
        write_cpio(Path(tmp) / "run.cpio", None, extra)
        with open(initrd, "wb") as out:       # the kernel unpacks both, in order
            for part in (base, Path(tmp) / "run.cpio"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        argv = [QEMU, "-M", "virt", "-cpu", CPU, "-m", MEMORY, "-smp", str(CPUS),
                "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
                "-kernel", rec["vmlinuz"], "-initrd", str(initrd),
                "-append", "console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=1"]
        code, out, klog = kernels.stream(argv, timeout, echo, cwd=kernels.ROOT,
                                         filter_klog=True,
                                         boot_timeout=min(timeout, kernels.BOOT_TIMEOUT),
                                         any_line_boots=True)
    return kernels.guest_result(f"arm64 {rec['version']}", f"qemu exit {code}", out, klog)


def send_file(path: str) -> str:
    """A guest shell line that prints a file on the console, for files_in()."""
    return f"echo '{FILE_MARK}{path}'; base64 -w 76 {path}; echo '{FILE_MARK}end'"


def files_in(out: str) -> dict[str, bytes]:
    """The files send_file() printed: {guest path: bytes}."""
    found = {}
    for m in re.finditer(rf"{re.escape(FILE_MARK)}(\S+)\r?\n(.*?){re.escape(FILE_MARK)}end",
                         out, re.S):
        found[m.group(1)] = base64.b64decode("".join(m.group(2).split()))
    return found


def without_files(out: str) -> str:
    """The console output with send_file()'s blocks cut to one line each."""
    return re.sub(rf"{re.escape(FILE_MARK)}(\S+)\r?\n.*?{re.escape(FILE_MARK)}end\r?\n",
                  lambda m: f"(sent {m.group(1)})\n", out, flags=re.S)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["libs"]:
            print(libs_root())
            return 0
        if argv[:1] == ["rootfs"]:
            print(rootfs())
            return 0
    except KernelError as e:
        log(f"error: {e}")
        return 1
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
