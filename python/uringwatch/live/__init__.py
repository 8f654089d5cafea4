"""Reading a running tracer: the Tracer, its BPF ring buffer and counters."""
