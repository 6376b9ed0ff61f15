"""Run every command README.md shows, in order, as written, and time each: the check that the README
is true on this machine.

Each ```sh block is split into commands (a line, with its `\\` continuations or its here-document);
each ```python block runs as one script. The first block's set-up commands (`tox -e sweep`,
`tox -e tests`) run as they are; every later command runs in the README's environment, the `sweep`
tox environment (`.tox/sweep/bin` first on PATH), from the repository root. A command whose line says
`# GPU only` is skipped, with that reason, where torch sees no CUDA device; one marked
`# several machines only` (a multi-node rendezvous, Slurm) is always skipped; one marked
`# needs the PyTorch wheel index` is skipped, with that reason, where that index cannot be reached (an
offline machine); one whose comment says `exit 0 / 1` (bench compare: 1 is a regression) passes with
either, and with exit 3 where the comment also says `3 inconclusive`.

    python scripts/readme_commands.py                    # everything, set-up included (~15 min on 2 CPUs)
    python scripts/readme_commands.py --skip-setup       # reuse .tox/sweep; skip the two set-up commands
    python scripts/readme_commands.py --list             # only print the commands

Exit status 0 when every command that ran exited 0; a table of commands, outcomes and seconds is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_MARK = "# GPU only"
CLUSTER_MARK = "# several machines only"  # a rendezvous host or a Slurm allocation: never run here
ENV_MARK = "\n--readme-commands-env--\n"  # after an `export` command's own output: its environment follows
EXIT_1_MARK = "exit 0 / 1"  # in a command's comment: exit 1 is one of its documented outcomes (a regression)
NETWORK_MARK = "# needs the PyTorch wheel index"  # e.g. the CPU build of torchvision: skipped where unreachable
PYTORCH_INDEX = "https://download.pytorch.org/whl/cpu/"
EXIT_3_MARK = "3 inconclusive"  # in a command's comment: exit 3 is one too (bench compare cannot tell)
SETUP_MARK = "tox -e "  # the set-up commands of the first block: they make the environment themselves


@dataclass
class Command:
    kind: str  # "sh" or "python"
    text: str
    block: int
    line: int

    @property
    def gpu_only(self) -> bool:
        return GPU_MARK in self.text

    @property
    def cluster_only(self) -> bool:
        return CLUSTER_MARK in self.text

    @property
    def needs_pytorch_index(self) -> bool:
        return NETWORK_MARK in self.text

    @property
    def setup(self) -> bool:
        return self.block == 0 and SETUP_MARK in self.text

    def shown(self, width: int = 100) -> str:
        first = self.text.strip().splitlines()[0]
        if self.kind == "python":
            first = f"python: {first} …"
        elif "\n" in self.text.strip():
            first += " …"
        return first if len(first) <= width else first[: width - 1] + "…"


def _strip_comment(line: str) -> str:
    """A shell line without its trailing `# comment` (a `#` inside quotes is kept)."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        list(lexer)
    except ValueError:
        return line
    in_single = in_double = False
    for i, ch in enumerate(line):
        if ch == "'" and not in_double:
            in_single = not in_single
        elif ch == '"' and not in_single:
            in_double = not in_double
        elif ch == "#" and not in_single and not in_double and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def extract(readme: Path) -> list[Command]:
    """The commands of README.md's ```sh and ```python blocks, in order."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    out: list[Command] = []
    block = -1
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(sh|bash|shell|python)\s*$", lines[i].strip())
        if not fence:
            i += 1
            continue
        kind = "python" if fence.group(1) == "python" else "sh"
        block += 1
        body, start = [], i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        if kind == "python":
            out.append(Command("python", "\n".join(body) + "\n", block, start + 1))
            continue
        j = 0
        while j < len(body):
            line = body[j]
            if not line.strip() or line.lstrip().startswith("#"):
                j += 1
                continue
            text, first = line, j
            while text.rstrip().endswith("\\") and j + 1 < len(body):
                j += 1
                text += "\n" + body[j]
            heredoc = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", text)
            if heredoc:
                end = heredoc.group(1)
                while j + 1 < len(body):
                    j += 1
                    text += "\n" + body[j]
                    if body[j].strip() == end:
                        break
            out.append(Command("sh", text, block, start + first + 1))
            j += 1
    return out


def reachable(url: str, timeout_s: float = 10.0) -> bool:
    """Whether `url` answers at all (any HTTP status): an offline machine cannot install from it."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=timeout_s).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def cuda_available(python: str) -> bool:
    r = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True)
    return r.stdout.strip() == "True"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--env", type=Path, default=ROOT / ".tox" / "sweep",
                    help="the README's environment (default: .tox/sweep, made by `tox -e sweep`)")
    ap.add_argument("--skip-setup", action="store_true", help="do not run the set-up commands (tox); reuse --env")
    ap.add_argument("--list", action="store_true", help="print the commands and exit")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one command may take (default: %(default)s)")
    ap.add_argument("--log", type=Path, help="write every command's output here")
    args = ap.parse_args(argv)

    commands = extract(args.readme)
    if args.list:
        for c in commands:
            print(f"[{c.kind} {c.block}:{c.line}] {c.text.strip()}\n")
        return 0

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # as a user's shell would be: nothing from this checkout leaks in
    bin_dir = args.env / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(args.env)
    log = open(args.log, "w", encoding="utf-8") if args.log else None
    rows: list[tuple[str, str, float]] = []
    gpu: bool | None = None
    online: bool | None = None
    failed = 0
    for c in commands:
        if c.setup and args.skip_setup:
            rows.append((c.shown(), "skipped (--skip-setup)", 0.0))
            continue
        if c.cluster_only:
            rows.append((c.shown(), "skipped: needs several machines (a rendezvous host or Slurm)", 0.0))
            continue
        if c.needs_pytorch_index:
            if online is None:
                online = reachable(PYTORCH_INDEX)
            if not online:
                rows.append((c.shown(), f"skipped: needs the PyTorch wheel index ({PYTORCH_INDEX}), which cannot "
                                        "be reached from here", 0.0))
                continue
        if c.gpu_only:
            if gpu is None:
                gpu = cuda_available(str(bin_dir / "python")) if (bin_dir / "python").exists() else False
            if not gpu:
                rows.append((c.shown(), "skipped: GPU only, and torch sees no CUDA device here", 0.0))
                continue
        run_env = dict(os.environ) if c.setup else env
        exports = c.kind == "sh" and c.text.lstrip().startswith("export ")
        # An `export` sets a variable for the commands after it, as in the reader's shell: its environment
        # is printed after a marker and carried on.
        text = c.text + f"\nprintf '{ENV_MARK}'; env -0" if exports else c.text
        argv_ = [str(bin_dir / "python"), "-"] if c.kind == "python" else ["bash", "-e", "-o", "pipefail", "-c", text]
        print(f"$ {c.shown()}", flush=True)
        t0 = time.perf_counter()
        try:
            r = subprocess.run(argv_, input=c.text if c.kind == "python" else None, cwd=ROOT, env=run_env,
                               capture_output=True, text=True, timeout=args.timeout)
            stdout = r.stdout
            if exports and r.returncode == 0 and ENV_MARK in stdout:
                stdout, _, blob = stdout.partition(ENV_MARK)
                env = dict(item.split("=", 1) for item in blob.split("\0") if "=" in item)
            code, output = r.returncode, stdout + r.stderr
        except subprocess.TimeoutExpired as e:
            code, output = 124, f"timed out after {args.timeout:g} s\n{e.stdout or ''}{e.stderr or ''}"
        seconds = time.perf_counter() - t0
        if log:
            log.write(f"=== {c.text.strip()}\n--- exit {code}, {seconds:.1f} s\n{output}\n")
            log.flush()
        if (code == 1 and EXIT_1_MARK in c.text) or (code == 3 and EXIT_3_MARK in c.text):
            rows.append((c.shown(), f"ok (exit {code}, one of its documented outcomes)", seconds))
        elif code != 0:
            failed += 1
            tail = " | ".join(output.strip().splitlines()[-3:])
            rows.append((c.shown(), f"FAILED (exit {code}): {tail[:300]}", seconds))
        else:
            rows.append((c.shown(), "ok", seconds))
        print(f"  -> {rows[-1][1]} ({seconds:.1f} s)", flush=True)
    if log:
        log.close()
    width = max(len(r[0]) for r in rows)
    print()
    for shown, outcome, seconds in rows:
        print(f"{shown:<{width}}  {seconds:8.1f} s  {outcome}")
    print(f"\n{len(rows) - failed} of {len(rows)} commands ok or skipped with their reason; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
