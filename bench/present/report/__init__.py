"""The HTML report: results files in, one self-contained page out (figures inline, data embedded).

    from bench.present.report import make_report
    make_report(["reports/sweep.json"], "reports/report.html")
"""

from __future__ import annotations

from bench.present.report.build import (
    ReportInputs,
    Source,
    build_report,
    embed_json,
    load_inputs,
    make_report,
    write_report,
)

__all__ = [
    "ReportInputs", "Source", "build_report", "embed_json", "load_inputs", "make_report", "write_report",
]
