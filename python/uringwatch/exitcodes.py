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

# replay's codes in a word each, for its --help
DUMP_PROBLEMS = {
    EXIT_NOT_A_DUMP: "not a dump",
    EXIT_NEWER_FORMAT: "newer format",
    EXIT_DAMAGED: "damaged",
    EXIT_TRUNCATED: "truncated",
    EXIT_UNKNOWN_FRAME: "unknown frame kind",
    EXIT_UNKNOWN_ABI: "unknown record ABI",
}
