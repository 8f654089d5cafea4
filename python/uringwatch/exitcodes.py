"""Exit codes of every uringwatch command, in one table (README "Output",
docs/DUMP_FORMAT.md "Errors", which a test holds to this one)."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
# `uringwatch replay`, one per kind of problem in a dump file
EXIT_NOT_A_DUMP = 3
EXIT_NEWER_FORMAT = 4
EXIT_DAMAGED = 5
EXIT_TRUNCATED = 6
EXIT_UNKNOWN_FRAME = 7
EXIT_UNKNOWN_ABI = 8
EXIT_PRIVILEGE = 77     # not root nor the capabilities BPF needs
# `uringwatch policy check`: some recorded operation or call would be denied
EXIT_DENIED = EXIT_ERROR
# `uringwatch confine`: the kernel has no io_uring BPF filters (77, as for privileges:
# what the command needs is missing here)
EXIT_UNSUPPORTED = EXIT_PRIVILEGE
EXIT_EXEC_FAILED = 127  # `uringwatch confine`: the command could not be run, as shells say

# replay's codes in a word each, for its --help
DUMP_PROBLEMS = {
    EXIT_NOT_A_DUMP: "not a dump",
    EXIT_NEWER_FORMAT: "newer format",
    EXIT_DAMAGED: "damaged",
    EXIT_TRUNCATED: "truncated",
    EXIT_UNKNOWN_FRAME: "unknown frame kind",
    EXIT_UNKNOWN_ABI: "unknown record ABI",
}
