"""Loads the bench pytest plugin for the suites: `pytest suites/ --benchmark-json out.json` (docs/suites.md)."""

from bench.pytest_plugin import *  # noqa: F401,F403 - the hooks and fixtures must sit in this namespace
