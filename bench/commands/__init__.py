"""Subcommands of the `bench` command line; each module registers one."""
