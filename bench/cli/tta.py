"""`bench tta`: time to accuracy = steps to target x step time, per batch size, and the best batch size.

From curves files (+ a sweep file for step times), or end to end on a built-in task: LR-tuned runs,
the gradient noise scale, and step times of the same model measured on the spot.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from bench.cli import COMMANDS, Deferred
from bench.cli.train import (
    DEFAULT_REPORTS_DIR,
    add_run_arguments,
    lr_factors_from_args,
    parse_list,
    parse_task_args,
    threads_from_args,
)
from bench.core.budget import MEASURE_DEFAULTS
from bench.core.errors import BenchError
from bench.core.params import nonnegative_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("tta", help=COMMANDS["tta"].help,
                       description="Time to accuracy per batch size, the critical batch size with its interval, "
                                   "the gradient noise scale and the best batch size for this device. Without "
                                   "--curves it runs end to end on --task (digits by default: a few minutes on a CPU).")
    p.add_argument("--task", default="digits",
                   help="digits, mnist1d, nqm or package.module:function, for an end-to-end study (default: %(default)s)")
    src = p.add_argument_group("from files instead")
    src.add_argument("--curves", nargs="+", metavar="FILE",
                     help="curves: bench.curves/bench.tta JSON, or CSV/JSON with batch_size, step or examples, metric "
                          "[, seed, lr]; TensorBoard event files are not supported")
    src.add_argument("--sweep", metavar="FILE", help="sweep results JSON with the step times of the same model")
    src.add_argument("--step-times", metavar="FILE",
                     help="instead of --sweep: CSV of step times measured elsewhere, with batch_size and step_time_s "
                          "(or median_s / mean_s) in seconds per step [, ci_low_s, ci_high_s, energy_per_step_j]")
    src.add_argument("--metric", help="metric name of imported curves (default: 'metric')")
    src.add_argument("--lower-is-better", action="store_true", default=None,
                     help="imported metric is better when lower (default: guessed from its name)")
    add_run_arguments(p)
    n = p.add_argument_group("noise scale and step time (end to end)")
    n.add_argument("--no-noise-scale", action="store_true", help="do not measure the gradient noise scale")
    n.add_argument("--noise-batch-small", type=positive_int, help="small batch of the noise scale (default: smallest batch)")
    n.add_argument("--noise-batch-big", type=positive_int, help="big batch, a multiple of the small (default: 16x, capped)")
    n.add_argument("--noise-steps", type=positive_int, help="steps to measure over (default: the steps batch-big needs)")
    n.add_argument("--no-step-time", action="store_true", help="do not time steps (no --sweep either: no TTA)")
    n.add_argument("--sweep-budget", type=positive_float, default=MEASURE_DEFAULTS["budget_s"],
                   help="seconds of timing per batch size, at most (default: %(default)s)")
    n.add_argument("--reference-batch", type=positive_int, metavar="B0",
                   help="reference batch of the tolerance definition of the critical batch (default: the smallest)")
    n.add_argument("--tolerance", type=positive_float, default=0.2,
                   help="steps may exceed perfect linear scaling from B0 by this much (default: %(default)s)")
    n.add_argument("--rounds", type=nonnegative_int, default=Deferred.attribute("bench.run.rounds", "DEFAULT_ROUNDS"),
                   help="after the sweep, time the step times TTA uses in this many interleaved rounds across the "
                        "batch sizes, so a load change hits them alike (default: %(default)s; 0: the sweep's own)")
    n.add_argument("--round-block", type=positive_float, default=Deferred.attribute("bench.run.rounds", "DEFAULT_BLOCK_S"), metavar="S",
                   help="seconds of steps per batch size in each round (default: %(default)s)")
    n.add_argument("--bootstrap", type=nonnegative_int, default=1000,
                   help="resamples of the noise scale's block bootstrap (default: %(default)s; B_crit's interval is a "
                        "profile likelihood, docs/tta.md)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", help="results JSON (default: reports/tta-<task>-<time>.json)")
    o.add_argument("--resume", action="store_true", help="continue --output, skipping the runs it has")
    o.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    o.add_argument("-q", "--quiet", action="store_true", help="no per-run lines")
    p.set_defaults(func=run)


def study_config_from_args(args: argparse.Namespace):
    from bench.run.study import StudyConfig

    cfg = StudyConfig(task=args.task, task_params=parse_task_args(args.task_arg), target=args.target,
                      batch_sizes=parse_list(args.batch_sizes, int, "batch size"), base_lr=args.lr,
                      base_batch_size=args.base_batch, lr_rule=args.lr_rule, optimizer=args.optimizer,
                      momentum=args.momentum, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                      warmup_epochs=args.warmup_epochs, precision=args.precision,
                      trust_coefficient=args.trust_coefficient, max_lr=args.max_lr, max_steps=args.max_steps,
                      eval_every=args.eval_every, max_time_s=args.max_time, device=args.device,
                      threads=threads_from_args(args), noise_scale=not args.no_noise_scale,
                      noise_batch_small=args.noise_batch_small, noise_batch_big=args.noise_batch_big,
                      noise_steps=args.noise_steps, sweep_path=args.sweep, measure_step_time=not args.no_step_time,
                      sweep_budget_s=args.sweep_budget, n_bootstrap=args.bootstrap,
                      step_time_rounds=args.rounds, round_block_s=args.round_block,
                      reference_batch=args.reference_batch, tolerance=args.tolerance)
    factors = lr_factors_from_args(args)
    if factors:
        cfg.lr_factors = factors
    seeds = parse_list(args.seeds, int, "seed")
    if seeds:
        cfg.seeds = seeds
    if args.continue_after_target is not None:
        cfg.continue_after_target = args.continue_after_target
    return cfg


def run(args: argparse.Namespace) -> int:
    from bench.analysis.tta import tta_from_files
    from bench.cli import output_console
    from bench.core.io import check_output_file
    from bench.records.tta import save_tta

    console = output_console()
    if args.step_times and not args.curves:
        raise BenchError("--step-times goes with --curves (an end-to-end study times its own steps)")
    if args.curves:
        name = Path(args.curves[0]).stem
        output = Path(args.output) if args.output else _default_output(name)
        if args.resume:
            raise BenchError("--resume applies to end-to-end studies; from files the analysis is simply redone")
        check_output_file(output, overwrite=args.overwrite,
                          inputs=[*args.curves, *(p for p in (args.sweep, args.step_times) if p)])
        args.results_path = output
        hib = None if args.lower_is_better is None else not args.lower_is_better
        result = tta_from_files(args.curves, sweep_path=args.sweep, target=args.target, metric=args.metric,
                                higher_is_better=hib, batch_sizes=parse_list(args.batch_sizes, int, "batch size"),
                                n_bootstrap=args.bootstrap, step_times_path=args.step_times,
                                reference_batch=args.reference_batch, tolerance=args.tolerance)
        save_tta(result, output)
    else:
        from bench.cli.train import runs_failure_status
        from bench.run.study import run_study

        cfg = study_config_from_args(args)
        output = Path(args.output) if args.output else _default_output(cfg.task)
        args.results_path = output
        result = run_study(cfg, output=output, resume=args.resume, overwrite=args.overwrite,
                           progress=None if args.quiet else _progress(console))
        print_tta(result, console)
        console.print(f"Results: {output}", highlight=False)
        return runs_failure_status("bench tta", result.curves, getattr(args, "fail_on_error", False))
    print_tta(result, console)
    console.print(f"Results: {output}", highlight=False)
    return 0


def _default_output(name: str) -> Path:
    import bench.present.fmt as fmt

    return DEFAULT_REPORTS_DIR / f"tta-{fmt.slug(name)}-{datetime.now().strftime('%Y%m%dT%H%M%S')}.json"


def _progress(console):
    def progress(event: str, info: dict) -> None:
        if event == "start":
            console.print(f"training: {info['planned'] - info['skipped']} runs to go"
                          + (f" ({info['skipped']} already done)" if info["skipped"] else ""), highlight=False)
        elif event == "done":
            c = info["curve"]
            st = c.steps_to_target(c.target) if c.target is not None else None
            got = "failed" if c.failed else f"{st.steps:.4g} steps" if st and st.reached else "not reached"
            console.print(f"  batch {c.batch_size:>5}  lr {c.lr:<9.3g} seed {c.seed}: {got:<12} ({info['seconds']:.1f} s)",
                          highlight=False)
        elif event == "noise":
            console.print(f"gradient noise scale: batch {info['batch_small']} vs {info['batch_big']}, "
                          f"{info['steps']} steps at lr {info['lr']:.3g}", highlight=False)
        elif event == "rounds":
            console.print(f"timing steps again in {info['rounds']} interleaved rounds at batch sizes "
                          f"{', '.join(map(str, info['batch_sizes']))}", highlight=False)
        elif event == "sweep":
            console.print(f"timing steps at batch sizes {', '.join(map(str, info['batch_sizes']))}", highlight=False)

    return progress


def print_tta(result, console) -> None:
    from bench.present.tables import tta_table
    from bench.present.tta import tta_verdict

    if result.analysis is None:
        console.print("No analysis yet (the study did not finish).")
        return
    console.print(tta_table(result))
    for line in tta_verdict(result):
        console.print(line, highlight=False)
