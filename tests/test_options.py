"""Tracer options: every one checked when the Tracer is made, before
anything touches the kernel (no root needed), with a message that says
what is allowed."""

import msgspec
import pytest

from uringwatch import Tracer, TracerError
from uringwatch.record import layout
from uringwatch.probe.options import FAIR_BURST, FAIR_RATE, MAX_PROCS, TracerOptions


@pytest.mark.parametrize("option, message", [
    (dict(cap=0), "cap must be 1..1024, not 0"),
    (dict(cap=layout.CAP_MAX + 1), "cap must be 1..1024, not 1025"),
    (dict(snap_bytes=layout.HEAD_MAX + 1), "snap_bytes must be 0..128"),
    (dict(ring_bytes=5000), "ring_bytes must be a power of two >= 4096"),
    (dict(ring_bytes=2048), "ring_bytes must be a power of two >= 4096"),
    (dict(rate=-1), "rate must be >= 0 (0: no budget), burst and max_procs >= 1"),
    (dict(burst=0), "rate must be >= 0 (0: no budget), burst and max_procs >= 1"),
    (dict(max_procs=0), "rate must be >= 0 (0: no budget), burst and max_procs >= 1"),
    (dict(max_aggs=1), "max_aggs must be >= 2 (one is the overflow aggregate)"),
    (dict(max_uses=0), "max_uses must be >= 1"),
    (dict(hook="nope"), "hook must be auto or one of syscalls, kprobes, raw_syscalls"),
    (dict(resolve="nope"), "resolve must be auto or one of btf, probe_read, proc, off"),
])
def test_bad_option_is_a_tracer_error_saying_what_is_allowed(option, message):
    with pytest.raises(TracerError) as e:
        Tracer(containers=False, **option)
    assert str(e.value) == message


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="nope"):
        Tracer(nope=1)


def test_defaults_come_from_the_header_and_the_fairness_constants():
    o = Tracer(containers=False).options
    assert (o.cap, o.snap_bytes, o.ring_bytes, o.max_inflight, o.wakeup_bytes) == (
        layout.DEFAULT_CAP, layout.DEFAULT_SNAP_BYTES, layout.DEFAULT_RING_BYTES,
        layout.DEFAULT_MAX_INFLIGHT, layout.DEFAULT_WAKEUP_BYTES)
    assert (o.rate, o.burst, o.max_procs) == (FAIR_RATE, FAIR_BURST, MAX_PROCS)


def test_options_serialise_under_the_names_recordings_keep():
    o = Tracer(containers=False, cap=7, fair=False, ops_all=True).options
    got = msgspec.to_builtins(o)
    assert list(got)[:11] == ["cap", "snap_bytes", "ring_bytes", "max_inflight",
                              "wakeup_bytes", "generic", "ops_all", "fair", "rate",
                              "burst", "max_procs"]
    assert (got["cap"], got["fair"], got["ops_all"]) == (7, False, True)
    assert msgspec.convert(got, TracerOptions) == o


def test_every_operation_implies_ring_events():
    assert Tracer(containers=False, ops_all=True).rings
    assert not Tracer(containers=False).rings


@pytest.mark.parametrize("call", [
    lambda t: t.stats(), lambda t: t.processes(), lambda t: t.ring_usage(),
    lambda t: t.poll(0), lambda t: t.add_pid(1),
])
def test_a_tracer_not_open_says_so(call):
    with pytest.raises(TracerError, match="tracer is not open"):
        call(Tracer(containers=False))


def test_hook_and_resolve_names_are_defined_once():
    """The hooks and identity paths are each one Literal (reports.Hook,
    layout.ResolvePath); the options, the CLI's choices, the hooks' table,
    the startup line's wording and Features take their names from it."""
    from typing import get_args, get_type_hints

    from uringwatch.commands import main
    from uringwatch.probe import hooks
    from uringwatch.probe.options import HookOption, ResolveOption
    from uringwatch.record.reports import Features, Hook
    assert get_args(HookOption) == ("auto", *get_args(Hook))
    assert get_args(ResolveOption) == ("auto", *get_args(layout.ResolvePath))
    assert tuple(hooks.HOOKS) == hooks.ORDER == get_args(Hook)
    assert hooks.RESOLVE == tuple(layout.RESOLVE_CODES) == get_args(layout.ResolvePath)
    assert set(main._IDENTITY_PATHS) == set(get_args(layout.ResolvePath))
    ap = main.parser()
    choices = {a.dest: tuple(a.choices) for a in ap._actions if a.dest in ("hook", "resolve")}
    assert choices == {"hook": get_args(HookOption), "resolve": get_args(ResolveOption)}
    hints = get_type_hints(Features)
    assert hints["hook"] is Hook and hints["resolve"] is layout.ResolvePath
    with pytest.raises(msgspec.ValidationError):     # a recording's header with another hook
        msgspec.convert({**_features(), "hook": "uprobes"}, Features)
    assert msgspec.convert(_features(), Features).hook == "kprobes"


def _features() -> dict:
    return dict(task_btf=True, tracefs="/sys/kernel/tracing", bpf_loop=True, hook="kprobes",
                resolve="btf", hooks=[], rings=[], cgroups="off")
