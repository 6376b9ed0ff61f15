"""`bench train`: convergence runs of a task over batch sizes x learning rates x seeds -> curves file."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from bench.cli import COMMANDS
from bench.core.errors import BenchError
from bench.core.params import (
    finite_float,
    nonnegative_float,
    nonnegative_int,
    parse_key_values,
    parse_list,
    positive_float,
    positive_int,
    thread_count,
)

DEFAULT_REPORTS_DIR = Path("reports")


def parse_task_args(items: list[str]) -> dict[str, str]:
    return parse_key_values(items, "task")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `bench train` and `bench tta`: the grid and how each run goes."""
    g = p.add_argument_group("runs (defaults come from the task)")
    g.add_argument("-a", "--task-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="task parameter, repeatable (e.g. -a hidden=128)")
    g.add_argument("-b", "--batch-sizes", metavar="LIST", help="comma-separated batch sizes")
    g.add_argument("--lr", type=positive_float, help="base learning rate, tuned at --base-batch")
    g.add_argument("--base-batch", type=positive_int, help="batch size the base learning rate belongs to")
    g.add_argument("--lr-rule", choices=["constant", "linear", "sqrt"], help="how the LR follows the batch size")
    g.add_argument("--lr-factors", metavar="LIST",
                   help="LR grid at each batch size, as multiples of the rule's value (e.g. 0.5,1,2)")
    g.add_argument("--lr-points", type=positive_int, help="log-spaced LR grid of this many points (ratio --lr-ratio)")
    g.add_argument("--lr-ratio", type=positive_float, default=2.0, help="ratio between LR grid points (default: %(default)s)")
    g.add_argument("--max-lr", type=positive_float,
                   help="largest LR tried at any batch size; the grid's centre is capped to keep under it "
                        "(default: the task's; nqm: 95%% of the SGD stability limit 2/h_max)")
    g.add_argument("--seeds", metavar="LIST", help="comma-separated seeds")
    g.add_argument("--optimizer", choices=["sgd", "adamw", "lars", "lamb"])
    g.add_argument("--momentum", type=nonnegative_float, help="SGD/LARS momentum")
    g.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="(default: %(default)s)")
    g.add_argument("--trust-coefficient", type=positive_float, default=0.001,
                   help="LARS trust coefficient η (default: %(default)s, as in the paper)")
    g.add_argument("--warmup-steps", type=nonnegative_int, default=0, help="linear warm-up length in steps")
    g.add_argument("--warmup-epochs", type=nonnegative_float, default=0.0, help="linear warm-up length in epochs")
    g.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast (default: fp32)")
    g.add_argument("-d", "--device", default="cpu", help="cpu, cuda, cuda:N (default: %(default)s)")
    g.add_argument("--threads", type=thread_count, default=None,
                   help="torch CPU threads (default: 1 on cpu, where tiny models run fastest single-threaded)")
    s = p.add_argument_group("stopping")
    s.add_argument("--target", type=finite_float, help="metric value to reach (default: the task's)")
    s.add_argument("--max-steps", type=positive_int, help="step budget per run")
    s.add_argument("--max-time", type=positive_float, help="wall-time budget per run, seconds")
    s.add_argument("--eval-every", type=positive_int, help="evaluate every N steps")
    s.add_argument("--continue-after-target", type=nonnegative_float, default=None,
                   help="after reaching the target, train on for this fraction of the steps it took "
                        "(0 = stop at the target; default: 0 for train, 1 for tta)")


def lr_factors_from_args(args) -> list[float] | None:
    from bench.run.train.lr import log_spaced_factors

    if args.lr_factors and args.lr_points:
        raise BenchError("give --lr-factors or --lr-points, not both")
    if args.lr_factors:
        return parse_list(args.lr_factors, float, "LR factor", positive=True)
    if args.lr_points is not None:
        return log_spaced_factors(args.lr_points, args.lr_ratio)
    return None


def threads_from_args(args) -> int | None:
    if args.threads is not None:
        return args.threads
    return 1 if str(args.device).startswith("cpu") else None


def register(sub) -> None:
    p = sub.add_parser("train", help=COMMANDS["train"].help,
                       description="Convergence runs: one curve (step, examples, wall time, loss, eval metric) "
                                   "per batch size x learning rate x seed, saved after every run.")
    p.add_argument("task", nargs="?", default="digits",
                   help="digits, mnist1d, nqm, or package.module:function returning a Task (default: %(default)s)")
    add_run_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", help="curves JSON (default: reports/curves-<task>-<time>.json)")
    o.add_argument("--resume", action="store_true", help="continue --output, skipping the runs it has")
    o.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    o.add_argument("-q", "--quiet", action="store_true", help="no per-run lines")
    o.add_argument("--fail-on-error", action="store_true",
                   help="exit 1 if any run failed (it is recorded in the file); without it, exit 1 only "
                        "when every run failed")
    p.set_defaults(func=run)


def runs_failure_status(command: str, curves, fail_on_error: bool) -> int:
    """Exit status of a grid that ran: 1 (one line on stderr) when every run failed, or with
    `fail_on_error` when any did; else 0."""
    curves = list(curves)
    failed = [c for c in curves if c.failed]
    if curves and len(failed) == len(curves):
        print(f"{command}: every run failed ({len(failed)}; batch {failed[0].batch_size}: {failed[0].error})",
              file=sys.stderr)
        return 1
    if fail_on_error and failed:
        print(f"{command}: {len(failed)} of {len(curves)} runs failed (batch {failed[0].batch_size}: "
              f"{failed[0].error}); they are recorded in the results file", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.cli import output_console
    from bench.measure.tasks import load_task
    from bench.run.train.runner import GridSpec, RunConfig, run_grid

    threads = threads_from_args(args)
    if threads is not None:
        torch.set_num_threads(threads)
    task = load_task(args.task, parse_task_args(args.task_arg))
    d = task.defaults
    factors = lr_factors_from_args(args) or [1.0]
    grid = GridSpec(
        batch_sizes=parse_list(args.batch_sizes, int, "batch size", positive=True) or list(d.get("batch_sizes") or [32]),
        base_lr=args.lr if args.lr is not None else d.get("base_lr", 0.1),
        base_batch_size=args.base_batch or d.get("base_batch_size", 32),
        lr_rule=args.lr_rule or d.get("lr_rule", "linear"), lr_factors=factors,
        seeds=parse_list(args.seeds, int, "seed") or [0],
        optimizer=args.optimizer or d.get("optimizer", "sgd"),
        momentum=args.momentum if args.momentum is not None else d.get("momentum", 0.9),
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, warmup_epochs=args.warmup_epochs,
        precision=args.precision, trust_coefficient=args.trust_coefficient,
        max_lr=args.max_lr if args.max_lr is not None else d.get("max_lr"))
    target = args.target if args.target is not None else task.default_target
    config = RunConfig(target=target, max_steps=args.max_steps if args.max_steps is not None else d.get("max_steps", 1000),
                       eval_every=args.eval_every if args.eval_every is not None else d.get("eval_every", 10),
                       max_time_s=args.max_time, continue_after_target=args.continue_after_target or 0.0,
                       device=args.device)
    import bench.present.fmt as fmt

    output = Path(args.output) if args.output else (
        DEFAULT_REPORTS_DIR / f"curves-{fmt.slug(task.name)}-{datetime.now().strftime('%Y%m%dT%H%M%S')}.json")
    args.results_path = output  # for the message if interrupted
    console = output_console()

    def progress(event: str, info: dict) -> None:
        if args.quiet:
            return
        if event == "start" and info["skipped"]:
            console.print(f"resuming: {info['skipped']} of {info['planned']} runs already done", highlight=False)
        elif event == "done":
            c = info["curve"]
            st = c.steps_to_target(target) if target is not None and not c.failed else None
            reached = ("failed" if c.failed else f"{st.steps:.4g} steps" if st and st.reached
                       else (st.reason if st else "no target"))
            console.print(f"batch {c.batch_size:>6}  lr {c.lr:<10.4g} seed {c.seed:<3} {reached:<32} "
                          f"{c.stop_reason}  ({info['seconds']:.1f} s)", highlight=False)

    cf = run_grid(task, grid, config, output=output, resume=args.resume, overwrite=args.overwrite, progress=progress)
    console.print(curves_table(cf.curves, target))
    console.print(f"Curves: {output}", highlight=False)
    return runs_failure_status("bench train", cf.curves, args.fail_on_error)


def curves_table(curves, target: float | None):
    """One row per run: batch, LR, seed, steps to target, final and best metric, why it stopped."""
    from rich.table import Table

    t = Table(title=f"{curves[0].task if curves else ''} · target {target if target is not None else '—'}",
              title_justify="left")
    for col, j in (("batch", "right"), ("lr", "right"), ("seed", "right"), ("steps to target", "right"),
                   ("final metric", "right"), ("best metric", "right"), ("steps run", "right"), ("stopped", "left")):
        t.add_column(col, justify=j)
    for c in sorted(curves, key=lambda c: (c.batch_size, c.lr or 0, c.seed or 0)):
        st = c.steps_to_target(target) if target is not None else None
        t.add_row(str(c.batch_size), f"{c.lr:.4g}" if c.lr is not None else "—", str(c.seed),
                  f"{st.steps:.4g}" if st and st.reached else "not reached" if st else "—",
                  _num(c.final_eval_metric), _num(c.best_eval_metric), str(c.steps_run), c.stop_reason or "—")
    return t


def _num(v) -> str:
    return "—" if v is None else f"{v:.4g}"
