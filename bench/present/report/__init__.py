"""The HTML report: results files in, one self-contained page out (figures inline, data embedded).

    from bench.present.report import make_report
    make_report(["reports/sweep.json"], "reports/report.html")

One module per job: `inputs` (finding and reading the files), `store_history` (the nightly history from
the history store, or from pytest-benchmark files through a temporary one), one per section (`sweeps`,
`tta`, `suites`, `history`, `environment`), `figures/` (one module per figure family) and `page`
(assembling and writing).
"""

from __future__ import annotations

from bench.present.report.inputs import ReportInputs, Source, load_inputs
from bench.present.report.page import (
    build_report,
    embed_json,
    make_report,
    read_embedded,
    write_report,
)

__all__ = [
    "ReportInputs", "Source", "build_report", "embed_json", "load_inputs", "make_report", "read_embedded",
    "write_report",
]
