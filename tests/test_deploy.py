"""The deployment manifests say what the code needs, and no more."""

import pathlib

import yaml

DEPLOY = pathlib.Path(__file__).parent.parent / "deploy"


def test_daemonset_minimal_privileges():
    ds = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    assert ds["kind"] == "DaemonSet" and ds["apiVersion"] == "apps/v1"
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON", "DAC_READ_SEARCH"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in ("/sys/kernel/btf", "/sys/fs/cgroup", "/sys/kernel/tracing"):
        assert mounts[path]["readOnly"] is True, path
    hosts = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]} == hosts
    assert ds["spec"]["selector"]["matchLabels"] == ds["spec"]["template"]["metadata"]["labels"]


def test_containerfile_installs_the_wheel_only():
    text = (DEPLOY / "Containerfile").read_text()
    assert "COPY dist/*.whl" in text and '"uringwatch[metrics]"' in text
    assert "clang" not in text and "libbpf" not in text
