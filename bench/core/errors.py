"""Errors a user can cause and fix: the CLI prints them as one line and exits with status 2."""


class BenchError(Exception):
    """Bad input or an unusable environment, described in one line for the user."""


class InvalidResultsFile(BenchError):
    """A results file that is missing, unreadable, or not in a schema this version reads."""
