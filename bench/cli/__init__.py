"""The `bench` command: a thin shell over the library. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.core.errors import BenchError

# Each module exposes register(subparsers); the parser it adds sets `func` (args -> exit status).
COMMAND_MODULES = [
    "bench.cli.sweep",
    "bench.cli.peak",
    "bench.cli.train",
    "bench.cli.tta",
    "bench.cli.report",
    "bench.cli.history",
    "bench.cli.compare",
    "bench.cli.allreduce",
]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (exit 2) instead of usage + error."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description=__doc__)
    from bench import __version__

    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BenchError as e:
        from bench.measure.distributed import main_rank

        if main_rank():  # under torchrun every rank fails alike: rank 0 says it once
            print(f"bench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted; completed points are already saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
