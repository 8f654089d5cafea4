#!/usr/bin/env python3
"""liburing's own test programs, the benign real client of the tests
(tests/test_liburing.py, tests/test_policy_kernel.py): built once from
Debian's liburing 2.3 source into the cache beside the kernels.

    ci/liburing.py build                    download, check and build them
    ci/liburing.py path                     print where they are (exit 1: not built)

Debian 12 packages liburing 2.3 but not its test suite; the source's
tarball is the one Debian's liburing_2.3-3.dsc names, checked against
that file's sha256. The tests link the source's own src/liburing.a, so
nothing of the system's liburing is needed.

Stdlib only, like ci/kernels.py.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels  # noqa: E402
from kernels import KernelError, sh  # noqa: E402

VERSION = "2.3"
TARBALL = f"liburing_{VERSION}.orig.tar.gz"
# Checksums-Sha256 of liburing_2.3-3.dsc (Debian 12), for this tarball
SHA256 = "2eac26f880125d83f75ba8641fde5d88226dd352d3cee95d45a9128758a8f1be"
URL = f"{kernels.MIRROR}/pool/main/libu/liburing/{TARBALL}"
CACHE = kernels.CACHE_ROOT / "liburing" / VERSION

# The test programs built, each for the register calls it makes (on
# 6.18: 1,146 calls of 15 register opcodes, ~4 s in all, ~6 s under strace).
# Left out: io_uring_register and rsrc_tags (they assert 2.3-era error
# codes that later kernels changed: on 6.18 one fails, one hangs), file-verify
# (5 s alone).
PROGRAMS = {
    "file-register": "REGISTER_FILES(2), sparse and huge sets, 823 FILES_UPDATE, "
                     "FILE_ALLOC_RANGE, UNREGISTER_FILES",
    "file-update": "REGISTER_FILES and FILES_UPDATE over three rings",
    "fixed-buf-iter": "REGISTER_BUFFERS, then fixed reads across them",
    "fixed-link": "REGISTER_BUFFERS with linked fixed reads",
    "fixed-reuse": "REGISTER_FILES, a slot replaced by a linked direct open",
    "personality": "REGISTER_PERSONALITY, UNREGISTER_PERSONALITY, ops under one",
    "eventfd": "REGISTER_EVENTFD",
    "eventfd-reg": "REGISTER_EVENTFD and UNREGISTER_EVENTFD, 100 pairs",
    "eventfd-disable": "REGISTER_EVENTFD, then the ring's eventfd flag toggled",
    "probe": "REGISTER_PROBE",
    "register-restrictions": "REGISTER_RESTRICTIONS and REGISTER_ENABLE_RINGS",
    "single-issuer": "REGISTER_ENABLE_RINGS of a disabled ring",
    "buf-ring": "REGISTER_PBUF_RING and UNREGISTER_PBUF_RING",
    "ringbuf-read": "REGISTER_PBUF_RING, then reads that pick from it",
    "msg-ring": "REGISTER_FILES and UNREGISTER_FILES around MSG_RING",
    "defer-taskrun": "REGISTER_ENABLE_RINGS and REGISTER_EVENTFD, DEFER_TASKRUN",
}
MANIFEST = "PROGRAMS.json"


def log(msg: str) -> None:
    print(f"liburing: {msg}", file=sys.stderr, flush=True)


def intact() -> Path | None:
    """The directory of the built programs, if every one is there as built."""
    manifest = CACHE / MANIFEST
    if not manifest.exists():
        return None
    rec = json.loads(manifest.read_text())
    if rec.get("tarball_sha256") != SHA256 or sorted(rec.get("programs", {})) != sorted(PROGRAMS):
        return None
    for name, digest in rec["programs"].items():
        binary = CACHE / "bin" / name
        if not binary.exists() or kernels.sha256(binary) != digest:
            return None
    return CACHE / "bin"


def download(dest: Path) -> None:
    log(f"downloading {URL}")
    try:
        with urllib.request.urlopen(URL, timeout=120) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise KernelError(f"could not download {URL} "
                          f"(set URINGWATCH_DEBIAN_MIRROR for another archive): {e}") from e
    got = kernels.sha256(dest)
    if got != SHA256:
        raise KernelError(f"{TARBALL} has sha256 {got}, expected {SHA256}")


def build() -> Path:
    """Builds the programs into CACHE/bin unless they are there already."""
    if (done := intact()) is not None:
        return done
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tarball = Path(tmp) / TARBALL
        download(tarball)
        sh(["tar", "-xzf", str(tarball), "-C", tmp])
        src = Path(tmp) / f"liburing-{VERSION}"
        log(f"building {len(PROGRAMS)} test programs")
        sh(["./configure", "--cc=clang"], cwd=src)
        sh(["make", "-s", "-C", "src", "liburing.a"], cwd=src)
        sh(["make", "-s", "-C", "test", *(f"{p}.t" for p in PROGRAMS)], cwd=src)
        shutil.rmtree(CACHE / "bin", ignore_errors=True)
        (CACHE / "bin").mkdir()
        programs = {}
        for name in PROGRAMS:
            shutil.copy(src / "test" / f"{name}.t", CACHE / "bin" / name)
            programs[name] = kernels.sha256(CACHE / "bin" / name)
    (CACHE / MANIFEST).write_text(json.dumps(
        {"version": VERSION, "url": URL, "tarball_sha256": SHA256, "programs": programs},
        indent=1) + "\n")
    return CACHE / "bin"


def main(argv: list[str]) -> int:
    if argv == ["build"]:
        try:
            print(build())
        except KernelError as e:
            log(str(e))
            return 1
        return 0
    if argv == ["path"]:
        done = intact()
        if done is None:
            log(f"not built in {CACHE} (ci/liburing.py build)")
            return 1
        print(done)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
