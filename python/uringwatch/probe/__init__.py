"""The kernel side: what the running kernel offers (hooks, features) and
loading the BPF object with its options and filters."""
