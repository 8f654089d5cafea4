"""The failures tracing expects, each reported in one line."""


class TracerError(Exception):
    """An expected failure: missing privilege, kernel feature, bad option."""


class PrivilegeError(TracerError):
    """The process lacks a privilege tracing needs."""


def os_message(e: OSError) -> str:
    """"FILE: reason" for a failure about a file, without Python's [Errno N]."""
    return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
