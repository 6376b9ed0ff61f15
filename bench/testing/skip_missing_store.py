"""A pytest plugin for a machine without the history store's packages (the lent GPU machine lacks
sqlalchemy, ruptures and fastjsonschema): a test module whose import fails only because one of them is
missing is skipped, with that reason, instead of stopping the collection of every other module.

    python -m pytest -p bench.testing.skip_missing_store tests -m gpu
"""

from __future__ import annotations

import pytest

OPTIONAL_PACKAGES = ("sqlalchemy", "ruptures", "fastjsonschema")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not isinstance(collector, pytest.Module):
        return
    text = str(report.longrepr)
    for name in OPTIONAL_PACKAGES:
        if f"No module named '{name}'" in text or f"No module named '{name}." in text:
            report.outcome = "skipped"
            report.longrepr = (str(collector.path), 0, f"Skipped: needs {name} (a package of the history store), "
                                                       "not installed here")
            return
