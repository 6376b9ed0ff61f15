"""The report's figures, one module per family: `sweeps`, `tta`, `trends` (suites and nightly history),
over the shared style, axes and SVG output in `common`. Each figure function takes loaded results and
returns an SVG string, or None when it has nothing to draw; nothing here measures or reads files."""
