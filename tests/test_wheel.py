"""The self-contained wheel: one file with the package, the BPF object and
libbpf with its libraries; a platform tag that tells the truth; within the
size budget; and (ci/wheel-chroot-test) installed offline on a bare Debian
with no libbpf, compiler or kernel headers, it traces."""

import importlib.resources
import os
import re
import signal
import subprocess
import sys
import zipfile

import pytest

from helpers import REPO, ROOT, assert_tagged_with_glibc_floor, copy_of_sources, meson
BUNDLED = ("libbpf.so.1", "libelf.so.1", "libz.so.1")
SIZE_BUDGET = 3 << 20
CHROOT_TIMEOUT = 600   # cold (debootstrap) took ~90 s here, warm ~10 s


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([os.path.join(REPO, "ci", "build-wheel"), str(out)],
                       capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr[-4000:]
    (name,) = os.listdir(out)
    assert r.stdout.strip() == str(out / name)
    return out / name


def test_one_wheel_holds_everything(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "uringwatch/uringwatch.bpf.o" in names
    assert "uringwatch/record/_abi.py" in names     # generated from the object's BTF
    assert "uringwatch/_lib/BUNDLED.txt" in names
    for lib in BUNDLED:
        assert f"uringwatch/_lib/{lib}" in names
        assert f"uringwatch/_lib/{lib}.copyright" in names
    shared = {n for n in names if re.search(r"\.so(\.\d+)*$", n)}
    assert shared == {f"uringwatch/_lib/{lib}" for lib in BUNDLED}


def test_size_budget(wheel):
    assert wheel.stat().st_size <= SIZE_BUDGET


def test_tag_is_the_bundled_libraries_glibc_floor(wheel, tmp_path):
    """Checked here from the version-needs section (`readelf -V`), what the
    dynamic loader itself checks; ci/wheel-tag reads the imported symbols."""
    assert_tagged_with_glibc_floor(wheel, tmp_path, BUNDLED, "x86_64")


def test_object_is_the_same_bytes_wherever_built(wheel, tmp_path):
    """Its BTF names the source files: with the checkout and build folders
    mapped out of those names (bpf/meson.build), a copy of the sources built
    elsewhere gives the wheel's object, and so does the installed package."""
    in_wheel = zipfile.ZipFile(wheel).read("uringwatch/uringwatch.bpf.o")
    src = copy_of_sources(tmp_path / "elsewhere")
    subprocess.run([meson(), "setup", "out"], cwd=src, check=True, capture_output=True, timeout=60)
    subprocess.run(["ninja", "-C", "out", "bpf/uringwatch.bpf.o"], cwd=src, check=True,
                   capture_output=True, timeout=120)
    assert (src / "out" / "bpf" / "uringwatch.bpf.o").read_bytes() == in_wheel
    installed = importlib.resources.files("uringwatch") / "uringwatch.bpf.o"
    assert installed.read_bytes() == in_wheel


@pytest.mark.skipif(not ROOT, reason="debootstrap, chroot and loading BPF need root")
def test_bare_debian_installs_offline_and_traces(wheel):
    # own session: on timeout the whole script, namespace and all, is ended
    proc = subprocess.Popen([os.path.join(REPO, "ci", "wheel-chroot-test"), str(wheel)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=CHROOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate()
        pytest.fail(f"ci/wheel-chroot-test took over {CHROOT_TIMEOUT} s:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-4000:]
    assert "chroot-calls: ok REGISTER_FILES" in out and out.rstrip().endswith("PASS")
