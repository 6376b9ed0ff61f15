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
from typing import Any, Callable, Mapping, NamedTuple

from bench.core.errors import BenchError
from bench.core.text import shown_name, terminal_safe


class Command(NamedTuple):
    module: str  # exposes register(subparsers); the parser it adds sets `func` (args -> exit status)
    help: str  # the line `bench --help` shows for it


# Every command, in the order `bench --help` lists them. A command's module is imported only when that
# command is chosen, so `bench --help` and argument errors answer without loading numpy or torch. A new
# command is one line here and one module in bench/cli/.
COMMANDS: dict[str, Command] = {
    "sweep": Command("bench.cli.sweep", "measure training step time across batch sizes"),
    "peak": Command("bench.cli.peak", "measure matmul TFLOP/s per precision on the device (the MFU denominator)"),
    "train": Command("bench.cli.train", "train a task across batch sizes, LRs and seeds; write the curves"),
    "tta": Command("bench.cli.tta", "time to accuracy across batch sizes: steps to target x step time"),
    "fit": Command("bench.cli.fit", "fit the critical batch size to a table of steps (or epochs) to target"),
    "report": Command("bench.cli.report",
                      "make a self-contained HTML report from results files and the history store"),
    "history": Command("bench.cli.history", "the history store: ingest results, list runs, find change points"),
    "compare": Command("bench.cli.compare", "slower, same or faster, or inconclusive, per benchmark and in all"),
    "allreduce": Command("bench.cli.allreduce", "all-reduce bandwidth across message sizes (under torchrun)"),
    "doctor": Command("bench.cli.doctor", "can step times from this machine be trusted? (about 1.5 minutes on a GPU)"),
}


class Deferred:
    """An option's default or choices that live in a module slow to import (numpy, scipy, torch behind
    it): read only when the command runs or its --help is printed, so an argument error answers at once.
    `read` returns the value; `text` (optional) what --help shows for it. As `choices`, give the option
    a metavar too: argparse reads the choices for a missing metavar as soon as the option is added."""

    def __init__(self, read: Callable[[], Any], text: Callable[[], str] | None = None):
        self._read, self._text = read, text

    @classmethod
    def attribute(cls, module: str, *path: str) -> "Deferred":
        """`module`'s attribute at `path` (a mapping's key where the attribute is a mapping), e.g.
        Deferred.attribute("bench.run.sweep", "SweepConfig", "budget_s")."""
        def read():
            value = importlib.import_module(module)
            for name in path:
                value = value[name] if isinstance(value, Mapping) else getattr(value, name)
            return value
        return cls(read)

    def value(self) -> Any:
        return self._read()

    def __str__(self) -> str:
        return str(self._text() if self._text else self._read())

    def __iter__(self):  # as `choices`: argparse lists them in --help
        return iter(self._read())

    def __contains__(self, item) -> bool:  # as `choices`: argparse checks a value against them
        return item in self._read()


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


def chosen_command(argv: list[str]) -> str | None:
    """The command `argv` names: its first word that is not an option (bench's own options take no
    value), or None."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `bench` parser: `command`'s parser in full, every other command a stub that only names it
    (so `bench --help` lists them all without importing any)."""
    parser = _Parser(prog="bench", description=__doc__, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from bench import __version__

    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        if name == command:
            importlib.import_module(cmd.module).register(sub)  # its add_parser takes help=COMMANDS[name].help
        else:
            sub.add_parser(name, help=cmd.help, add_help=False)
    return parser


def resolve_deferred(args: argparse.Namespace) -> argparse.Namespace:
    """Replace every Deferred default left in `args` by its value (imports what holds it)."""
    for key, value in vars(args).items():
        if isinstance(value, Deferred):
            setattr(args, key, value.value())
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`argv` (default: the command line) parsed as `bench` parses it, defaults resolved. Bad arguments
    exit 2 with one line on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return resolve_deferred(build_parser(chosen_command(argv)).parse_args(argv))


def _interrupted_message(args: argparse.Namespace) -> str:
    """What an interrupted command leaves behind, in words: only claim "saved" where a file is."""
    out = getattr(args, "results_path", None)
    if out is not None and Path(out).exists():
        hint = " (run the same command with --resume to continue)" if hasattr(args, "resume") else ""
        return f"interrupted; what was completed is saved in {out}{hint}"
    return "interrupted; nothing was saved"


def _refuse_empty_outputs(args: argparse.Namespace) -> None:
    """`-o ""` is a mistake (an unset variable in a script), not a request for the default file name."""
    for name in ("output", "json_path", "plot"):
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise BenchError(f"--{name.replace('_path', '')}: the file name is empty; give a file name or leave "
                             "the option out")


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
    code = None
    try:
        code = _main(argv)
        return code
    finally:
        if previous is not None or signal.getsignal(signal.SIGINT) is interrupted_while_loading:
            signal.signal(signal.SIGINT, previous or signal.default_int_handler)
        if argv is None and code is not None:  # the process's own command: it exits next
            install_finished_interrupt_handler(code, _last_kept)


_last_kept = ""  # what the finished command kept, for a Ctrl-C while the process exits


def install_finished_interrupt_handler(code: int, kept: str):
    """After the command is done, a Ctrl-C (the process exits slowly: torch's teardown) says the work was
    done and what was kept, and exits with the command's own status. Returns the handler it replaced."""
    def finished(signum, frame):  # pragma: no cover - exercised in a child process
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.write(2, f"bench: interrupted while exiting, after the command had finished{kept}\n".encode())
        os._exit(code)

    return signal.signal(signal.SIGINT, finished)


def _main(argv: list[str] | None) -> int:
    command = "bench"
    args = None
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(chosen_command(argv))
        args = resolve_deferred(parser.parse_args(argv))
        command = f"bench {args.command}" if getattr(args, "command", None) else "bench"
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if signal.getsignal(signal.SIGINT) is interrupted_while_loading:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, Ctrl-C saves what it can
        try:
            _refuse_empty_outputs(args)
            code = int(args.func(args) or 0)
            global _last_kept
            out = getattr(args, "results_path", None)
            _last_kept = f"; its results are in {out}" if out is not None and Path(out).exists() else ""
            return code
        except BenchError as e:
            from bench.measure.distributed import main_rank

            if main_rank():  # under torchrun every rank fails alike: rank 0 says it once
                print(f"{command}: error: {terminal_safe(e)}", file=sys.stderr)
            return 2
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise  # our reader went away: below
            # A file system's refusal that no check above put in words (a name too long to even ask about).
            from bench.core.io import describe_os_error

            where = f"{shown_name(e.filename)}: " if e.filename else ""
            print(f"{command}: error: {where}{describe_os_error(e)}", file=sys.stderr)
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
