"""Small pieces every report section uses: a sortable table cell, numbers read from results files, colours
and trusted SVG markup."""

from __future__ import annotations

from typing import Any, Sequence

from bench.core.vocabulary import TIMER_CUDA_EVENT, TIMER_HOST
from bench.present.fmt import batch_list
from bench.records.suite import HOST_TIMER

# How each timer took its numbers, in words.
TIMER_WORDS = {
    TIMER_CUDA_EVENT: "CUDA events around each step, with one host synchronisation per block of steps",
    TIMER_HOST: "the host clock (time.perf_counter) around each step",
    HOST_TIMER: "pytest-benchmark's host-clock round times",
}


def cell(text: Any, v: Any = None, title: str | None = None, cls: str | None = None, json: str | None = None) -> dict:
    """One table cell: shown text, the value to sort by (number or string), an optional tooltip; with `json`,
    the text is the summary of a folded block holding that JSON (it scrolls, never cut at the card's edge)."""
    return {"text": "—" if text is None or text == "" else str(text), "v": v, "title": title, "cls": cls, "json": json}


def compact_table(table: dict, keep: Sequence[str] = ()) -> dict:
    """`table` without the columns in which no row has a value (all "—"), so a table fits the page one line
    per row; their names go to `left_out` (added to any already there), for one line under the table.
    Columns named in `keep` stay."""
    rows = table["rows"]
    used = [i for i, c in enumerate(table["columns"])
            if c in keep or not rows or any(r[i]["text"] != "—" for r in rows)]
    dropped = [c for i, c in enumerate(table["columns"]) if i not in used]
    return {**table, "columns": [table["columns"][i] for i in used], "rows": [[r[i] for i in used] for r in rows],
            "left_out": list(table.get("left_out") or []) + dropped}


def batches(values: Sequence[int]) -> str:
    """Batch sizes as the page lists them: '1, 4, 1,024', or the first few and the last past ten."""
    return batch_list(values, limit=10, thousands=True)


def hex_color(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def markup(svg: str | None):
    """An SVG string from the figures, marked safe for the template (None stays None)."""
    from markupsafe import Markup

    # SVG from figures.common.to_svg: matplotlib's XML writer escaped every string taken from results.
    return Markup(svg) if svg else None


def distinct(labels: Sequence[str], extras: Sequence[Sequence[str]]) -> list[str]:
    """`labels` made unique: each label shared with another gets the first of its `extras` (what
    distinguishes it: a setting, a date, a file name) that no other label with the same base has."""
    out = list(labels)
    for i, lab in enumerate(labels):
        same = [j for j, other in enumerate(labels) if other == lab and j != i]
        if not same:
            continue
        for k, extra in enumerate(extras[i]):
            if extra and all(len(extras[j]) <= k or extras[j][k] != extra for j in same):
                out[i] = f"{lab} · {extra}"
                break
        else:
            out[i] = f"{lab} · #{i + 1}"
    return out

