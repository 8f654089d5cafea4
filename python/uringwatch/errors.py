"""The failures tracing expects, each reported in one line."""


class TracerError(Exception):
    """An expected failure: missing privilege, kernel feature, bad option."""


class PrivilegeError(TracerError):
    """The process lacks a privilege tracing needs."""
