"""What the host offers under the tracer: the libbpf binding, privileges and
tracefs, cgroups and containers."""
