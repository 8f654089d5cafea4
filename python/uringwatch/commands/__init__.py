"""The uringwatch command line and its subcommands."""
