"""Judging events: findings rules, io_uring policies and their classic BPF
filters."""
