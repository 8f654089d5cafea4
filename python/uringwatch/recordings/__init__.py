"""Dump files: writing, reading and replaying them."""
