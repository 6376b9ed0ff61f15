"""bench: how long is a training step at each batch size, where does "equal time per step" stop, and
which batch size reaches a target accuracy soonest on this machine?

Start with `bench sweep` (a minute on a CPU); `bench COMMAND --help` lists each command's options.
Results go to reports/ as JSON; `bench report reports/` turns them into one HTML page.
"""

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from bench.core.errors import BenchError

# Each module exposes register(subparsers); the parser it adds sets `func` (args -> exit status).
COMMAND_MODULES = [
    "bench.cli.sweep",
    "bench.cli.peak",
    "bench.cli.train",
    "bench.cli.tta",
    "bench.cli.fit",
    "bench.cli.report",
    "bench.cli.history",
    "bench.cli.compare",
    "bench.cli.allreduce",
]

EPILOG = """\
first steps:
  bench sweep                       the built-in MLP over batch sizes 1..1024 (about a minute on a CPU)
  bench sweep -w cnn -b 2,8,32      another model, chosen batch sizes
  bench tta                         time to accuracy on a small built-in task (a few minutes on a CPU)
  bench report reports/             every results file in reports/ -> one HTML page

exit status: 0 done; 1 ran, but nothing was measured (or, with --fail-on-error, some point or run
failed); 2 bad input or a file that cannot be read or written (one line on stderr says which);
130 interrupted (what was completed is kept in the results file); 141 its output was closed
(`bench ... | head`), with what was completed kept too.
"""


def interrupted_while_loading(signum, frame):  # pragma: no cover - exercised in a child process
    """SIGINT handler while the modules load: one line and exit 130, wherever the import was."""
    os.write(2, b"bench: interrupted while starting; nothing was run\n")
    os._exit(130)


def install_startup_interrupt_handler():
    """Ctrl-C while the modules load (torch takes seconds) must end in one line, not a traceback from
    deep inside an import: called first thing by `main` and by `python -m bench`. Returns the handler
    it replaced (None if it left a non-default one alone)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        return signal.signal(signal.SIGINT, interrupted_while_loading)
    return None


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (exit 2) instead of usage + error."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description=__doc__, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from bench import __version__

    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _interrupted_message(args: argparse.Namespace) -> str:
    """What an interrupted command leaves behind, in words: only claim "saved" where a file is."""
    out = getattr(args, "results_path", None)
    if out is not None and Path(out).exists():
        hint = " (run the same command with --resume to continue)" if hasattr(args, "resume") else ""
        return f"interrupted; what was completed is saved in {out}{hint}"
    return "interrupted; nothing was saved"


def output_console():
    """The rich Console a command prints its results with: full width on a terminal, 160 columns in a log
    or pipe (no wrapping mid-table). A closed output raises BrokenPipeError, which `main` turns into
    exit 141 like any other command's, instead of rich's own exit(1)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(32, "Broken pipe")

    return _Console() if sys.stdout.isatty() else _Console(width=160)


def _stdout_closed() -> bool:
    """Whether nothing reads our standard output any more: the write end of a pipe whose read end is
    closed polls as an error. Where that cannot be asked, assume it (the usual cause)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # no file descriptor behind it (embedded, captured): no pipe of ours to break
    try:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True


def main(argv: list[str] | None = None) -> int:
    previous = install_startup_interrupt_handler()
    try:
        return _main(argv)
    finally:
        if previous is not None or signal.getsignal(signal.SIGINT) is interrupted_while_loading:
            signal.signal(signal.SIGINT, previous or signal.default_int_handler)


def _main(argv: list[str] | None) -> int:
    command = "bench"
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = f"bench {args.command}" if getattr(args, "command", None) else "bench"
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if signal.getsignal(signal.SIGINT) is interrupted_while_loading:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, Ctrl-C saves what it can
        try:
            return int(args.func(args) or 0)
        except BenchError as e:
            from bench.measure.distributed import main_rank

            if main_rank():  # under torchrun every rank fails alike: rank 0 says it once
                print(f"{command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{command}: {_interrupted_message(args)}", file=sys.stderr)
            return 130
        except SystemExit as e:
            # Only code bench runs (a user's workload or task) calls sys.exit inside a command.
            print(f"{command}: error: the code it ran called sys.exit({e.code!r}); bench stopped there",
                  file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted while starting; nothing was run", file=sys.stderr)
        return 130
    except BrokenPipeError as e:
        if not _stdout_closed():  # a pipe of the code it ran, not our output
            print(f"{command}: error: the code it ran wrote to a closed pipe ({e})", file=sys.stderr)
            return 2
        # The reader of our output went away (`bench compare ... | head`): stop quietly, as other Unix tools
        # do, with what was completed kept. stdout goes to /dev/null so the exit's flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        saved = ""
        if getattr(args, "results_path", None) is not None:  # a command that writes results says what it kept
            saved = "; " + _interrupted_message(args).removeprefix("interrupted; ")
        print(f"{command}: standard output was closed (broken pipe), so it stopped{saved}", file=sys.stderr)
        return 141  # 128 + SIGPIPE, what a shell reports for a process a closed pipe ended


if __name__ == "__main__":
    raise SystemExit(main())
