#!/usr/bin/env python3
"""Copy the system's libbpf.so.1 and every non-glibc library it needs into
OUTDIR, for the wheel, with Debian's copyright file of each.

    copy-libs.py [--root DIR] OUTDIR READELF PATCHELF SONAME...

SONAME... is what bundle/meson.build declares as outputs: meson needs the
file names before anything runs, so this script checks that they are exactly
the dependency closure of libbpf.so.1 on this build host, and fails (naming
the difference) when a new libbpf or libelf needs something else.

Each copy that needs another bundled library gets RUNPATH $ORIGIN, so the
dynamic loader finds libelf.so.1 beside libbpf.so.1 with no help from the
Python side, and `ldd` on the installed copy shows where each comes from.

With --root DIR the libraries come from Debian packages unpacked into DIR
(another architecture's, for its wheel: ci/arm64.py libs), which holds
PACKAGES.json: each package's version and files. Without it, from this
host, as the loader's cache and dpkg know them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

ROOT_LIB = "libbpf.so.1"
# What glibc itself provides: the manylinux platform tag promises these, so
# they are never bundled (ci/wheel-tag checks the version floor they imply).
GLIBC = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
         "libresolv.so.2", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
LDCONFIG_ARCH = "x86-64"   # this host's libraries in the loader's cache


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def system_paths() -> dict[str, str]:
    """soname -> path, from the dynamic loader's own cache."""
    paths = {}
    for line in run("/sbin/ldconfig", "-p").splitlines():
        m = re.match(r"\s+(\S+) \(([^)]*)\) => (\S+)", line)
        if m and LDCONFIG_ARCH in m.group(2):
            paths.setdefault(m.group(1), m.group(3))
    return paths


def root_paths(root: str) -> dict[str, str]:
    """soname -> path under an unpacked tree: what its lib directories hold
    under a soname-like name (libbpf.so.1, the packages' own symlinks)."""
    paths = {}
    for d in ("lib", "usr/lib"):
        for dirpath, _, files in os.walk(os.path.join(root, d)):
            for name in files:
                if re.fullmatch(r"lib[\w+-]+\.so\.\d+", name):
                    paths.setdefault(name, os.path.join(dirpath, name))
    return paths


def root_package(root: str, path: str) -> tuple[str, str]:
    """(package, version) whose files include path, from PACKAGES.json."""
    with open(os.path.join(root, "PACKAGES.json")) as f:
        packages = json.load(f)
    rel = "/" + os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    for pkg, info in packages.items():
        if rel in info["files"]:
            return pkg, info["version"]
    sys.exit(f"copy-libs: no package in {root}/PACKAGES.json has {rel}: cannot ship its licence")


def needed(readelf: str, path: str) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]", run(readelf, "-d", path))


def closure(readelf: str, paths: dict[str, str]) -> dict[str, str]:
    """libbpf.so.1 and what it needs, transitively, less glibc: soname -> path."""
    found, todo = {}, [ROOT_LIB]
    while todo:
        name = todo.pop()
        if name in found or name in GLIBC:
            continue
        if name not in paths:
            sys.exit(f"copy-libs: {name} is not installed (ldconfig -p does not list it)")
        found[name] = paths[name]
        todo += needed(readelf, paths[name])
    return found


def debian_package(path: str) -> tuple[str, str]:
    """(package, version) owning path. dpkg records one spelling of a file,
    /lib or /usr/lib, and the ldconfig cache may give the other (usrmerge)."""
    real = os.path.realpath(path)
    alt = real[4:] if real.startswith("/usr/lib/") else "/usr" + real
    for candidate in (real, alt):
        r = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            pkg = r.stdout.split(":", 1)[0]
            return pkg, run("dpkg-query", "-W", "-f=${Version}", pkg)
    sys.exit(f"copy-libs: no Debian package owns {real}: cannot ship its licence")


def arch_of(readelf: str, path: str) -> str:
    return re.search(r"Machine:\s+(.+)", run(readelf, "-h", path)).group(1).strip()


def write_licence(copyright_file: str, dst: str) -> None:
    """Debian's copyright file, then the full text of each licence it only
    points to (/usr/share/common-licenses/ is not on the wheel's hosts)."""
    with open(copyright_file) as f:
        text = f.read()
    for ref in sorted(set(re.findall(r"/usr/share/common-licenses/[\w.+-]+", text))):
        with open(ref) as f:
            text += f"\n\n===== {ref}, referred to above =====\n\n{f.read()}"
    with open(dst, "w") as f:
        f.write(text)


def main() -> None:
    args = sys.argv[1:]
    root = None
    if args[:1] == ["--root"]:
        root, args = args[1], args[2:]
    outdir, readelf, patchelf, *declared = args
    libs = closure(readelf, root_paths(root) if root else system_paths())
    if set(libs) != set(declared):
        sys.exit(f"copy-libs: libbpf's closure on this host is {sorted(libs)}, "
                 f"bundle/meson.build declares {sorted(declared)}: update it")
    source = ("# Debian packages of the wheel's architecture, unpacked (not installed)."
              if root else "# the build host's Debian packages.")
    manifest = ["# Shared libraries bundled with uringwatch, copied at build time from",
                f"{source} Licences: <soname>.copyright.", ""]
    for soname, src in sorted(libs.items()):
        dst = os.path.join(outdir, soname)
        shutil.copyfile(src, dst)   # follows the soname symlink to the real file
        os.chmod(dst, 0o644)
        if any(n not in GLIBC for n in needed(readelf, dst)):
            run(patchelf, "--set-rpath", "$ORIGIN", dst)
        pkg, version = root_package(root, src) if root else debian_package(src)
        write_licence(os.path.join(root or "/", f"usr/share/doc/{pkg}/copyright"),
                      os.path.join(outdir, soname + ".copyright"))
        with open(src, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        # the path the package installs it at (under --root: inside the tree)
        origin = os.path.realpath(src)
        if root:
            origin = "/" + os.path.relpath(origin, os.path.realpath(root))
        manifest.append(f"{soname}  Debian {pkg} {version}"
                        f"{f' ({arch_of(readelf, src)})' if root else ''}  from {origin}"
                        f"  sha256 {digest} (before RUNPATH)")
    with open(os.path.join(outdir, "BUNDLED.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
