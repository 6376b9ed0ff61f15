"""The one resumable runner: open or resume a results file, refuse other settings or hardware in one line,
skip what is done, retry what failed, save after every item; and the sweep and the training grid use it."""

import json
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.io import read_json, write_json_atomic
from bench.run.runner import Identity, Resumable, check_identity


@dataclass
class Record:
    """A stand-in results record: settings, environment hash, entries (key, ok)."""

    settings: dict
    env_hash: str | None = "here"
    entries: list = field(default_factory=list)
    finished: bool = False


def save(r: Record, path):
    write_json_atomic(path, {"kind": "test", "settings": r.settings, "env_hash": r.env_hash,
                             "entries": r.entries, "finished": r.finished})


def load(path):
    d = read_json(path)
    if d.get("kind") != "test":
        raise InvalidResultsFile(f"{path}: not a test record")
    return Record(d["settings"], d["env_hash"], [tuple(e) for e in d["entries"]], d["finished"])


def open_run(path, settings=None, env_hash="here", **kw):
    settings = settings if settings is not None else {"a": 1, "nested": {"b": 2}}
    return Resumable.open(path, create=lambda: Record(settings, env_hash), load=load, save=save,
                          entries=lambda r: r.entries, key=lambda e: e[0],
                          identity=Identity(settings, env_hash),
                          identity_of=lambda r: Identity(r.settings, r.env_hash),
                          failed=lambda e: not e[1], **kw)


def test_each_item_is_saved_as_it_completes_and_finish_marks_the_file(tmp_path):
    out = tmp_path / "r.json"
    run = open_run(out)
    assert not run.resumed and not out.exists()
    run.add(("x", True))
    assert json.loads(out.read_text())["entries"] == [["x", True]]
    assert json.loads(out.read_text())["finished"] is False
    run.finish()
    assert json.loads(out.read_text())["finished"] is True


def test_resume_skips_done_items_retries_failed_ones_and_reopens_the_file(tmp_path):
    out = tmp_path / "r.json"
    first = open_run(out)
    first.add(("x", True))
    first.add(("y", False))  # failed: to be tried again
    first.finish()
    again = open_run(out, resume=True)
    assert again.resumed and again.result.finished is False
    assert again.done == {"x"}
    assert again.pending(["x", "y", "z"], key=lambda k: k) == ["y", "z"]


def test_without_a_file_the_record_is_kept_in_memory():
    run = open_run(None)
    run.add(("x", True))
    assert run.finish().entries == [("x", True)]


def test_an_existing_file_is_never_replaced_without_asking(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("keep me")
    with pytest.raises(BenchError, match="exists: pass --resume to continue it or --overwrite to replace it"):
        open_run(out)
    assert out.read_text() == "keep me"
    open_run(out, overwrite=True).finish()
    assert json.loads(out.read_text())["kind"] == "test"


def test_resume_and_overwrite_together_are_a_contradiction(tmp_path):
    with pytest.raises(BenchError, match="contradict"):
        open_run(tmp_path / "r.json", resume=True, overwrite=True)


def test_resume_of_a_file_of_another_kind_is_a_one_line_error_and_leaves_it_alone(tmp_path):
    out = tmp_path / "r.json"
    out.write_text('{"kind": "other"}')
    with pytest.raises(InvalidResultsFile, match="not a test record"):
        open_run(out, resume=True)
    assert out.read_text() == '{"kind": "other"}'


def test_resume_refuses_other_settings_naming_the_first_that_differs(tmp_path):
    out = tmp_path / "r.json"
    open_run(out).finish()
    before = out.read_text()
    with pytest.raises(BenchError) as e:
        open_run(out, settings={"a": 1, "nested": {"b": 3}}, resume=True)
    assert str(e.value) == (f"cannot resume {out}: it was made with nested.b=2, not 3; "
                            "resume with the same settings or write a new file")
    assert out.read_text() == before


def test_resume_refuses_other_hardware_but_not_a_file_without_a_fingerprint(tmp_path):
    out = tmp_path / "r.json"
    open_run(out).finish()
    with pytest.raises(BenchError, match=r"other hardware or software \(fingerprint here, here there\)"):
        open_run(out, env_hash="there", resume=True)
    open_run(tmp_path / "old.json", env_hash=None).finish()
    assert open_run(tmp_path / "old.json", env_hash="there", resume=True).resumed


def test_settings_are_compared_as_stored():
    # A tuple in memory is the list it was saved as; a missing setting differs from a given one.
    check_identity("f.json", Identity({"sizes": [1, 2]}), Identity({"sizes": (1, 2)}))
    with pytest.raises(BenchError, match="it was made with extra=None, not 1"):
        check_identity("f.json", Identity({}), Identity({"extra": 1}))


# --------------------------------------------------------------------------- the lock beside the file


def test_a_finished_run_leaves_nothing_beside_its_results_file(tmp_path):
    out = tmp_path / "r.json"
    run = open_run(out)
    assert (tmp_path / ".r.json.lock").exists()  # held while the run writes
    run.add(("x", True))
    run.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    open_run(out, resume=True).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_refused_open_leaves_nothing_behind(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("not json")
    with pytest.raises(BenchError):
        open_run(out, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_second_writer_is_refused_while_the_first_holds_the_file(tmp_path):
    from bench.core.io import OutputLock

    out = tmp_path / "r.json"
    first = open_run(out)
    with pytest.raises(BenchError, match="being written by another bench process"):
        OutputLock(out).acquire()
    first.finish()
    with OutputLock(out) as again:
        assert again.held
    assert not (tmp_path / ".r.json.lock").exists()


def test_a_run_dropped_without_closing_lets_go_of_its_file(tmp_path):
    import gc

    out = tmp_path / "r.json"
    run = open_run(out)
    run.add(("x", True))
    del run
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    open_run(out, resume=True).finish()


def test_an_empty_lock_file_left_by_a_killed_run_is_taken_and_removed(tmp_path):
    (tmp_path / ".r.json.lock").write_bytes(b"")  # what kill -9 leaves: a file, no lock on it
    open_run(tmp_path / "r.json").finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_lock_file_removed_as_another_process_opened_it_does_not_count_as_held(tmp_path, monkeypatch):
    import os

    import bench.core.io as io
    from bench.core.io import OutputLock

    out = tmp_path / "r.json"
    first = OutputLock(out).acquire()
    stale = os.open(first.lock_path, os.O_RDWR)  # a second process opens the lock file...
    first.release()  # ...the first removes it and lets go...
    third = OutputLock(out).acquire()  # ...and a third takes a new one at the path
    real_open, calls = os.open, []

    def open_stale_first(path, flags, mode=0o777):
        calls.append(path)
        return stale if len(calls) == 1 else real_open(path, flags, mode)

    monkeypatch.setattr(io.os, "open", open_stale_first)
    with pytest.raises(BenchError, match="being written by another bench process"):
        OutputLock(out).acquire()  # the stale file locks, but it is no longer the lock: retried, refused
    assert len(calls) == 2
    monkeypatch.undo()
    third.release()
    assert not third.lock_path.exists()


# --------------------------------------------------------------------------- the users of the runner


def _tiny_workload():
    from bench.measure.workloads import Workload

    return Workload(name="tiny", build_model=lambda: nn.Linear(4, 2),
                    make_batch=lambda b, device: (torch.randn(b, 4), torch.randint(0, 2, (b,))),
                    loss_fn=nn.functional.cross_entropy)


def _sweep(tmp_path, **change):
    from bench.run.sweep import SweepConfig, run_sweep

    settings = dict(batch_sizes=[2], device="cpu", min_samples=6, min_time_s=0.005, budget_s=0.05,
                    warmup_max_s=0.05, telemetry=False)
    out = tmp_path / "sweep.json"
    run_sweep(SweepConfig(**settings), workload=_tiny_workload(), output=out)
    return lambda: run_sweep(SweepConfig(**{**settings, **change}), workload=_tiny_workload(), output=out, resume=True)


def _grid(tmp_path, **change):
    from bench.measure.tasks import nqm
    from bench.run.train.runner import GridSpec, RunConfig, run_grid

    out = tmp_path / "curves.json"
    grid = dict(batch_sizes=[4], base_lr=0.5, base_batch_size=4, lr_rule="constant", momentum=0.0)
    run_grid(nqm(dim=5), GridSpec(**grid), RunConfig(target=0.5, max_steps=3, eval_every=1), output=out)
    return lambda: run_grid(nqm(dim=5), GridSpec(**{**grid, **change}), RunConfig(target=0.5, max_steps=3, eval_every=1),
                            output=out, resume=True)


def test_a_sweep_and_a_training_grid_leave_only_their_results_files(tmp_path):
    _sweep(tmp_path)
    _grid(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.json", "sweep.json"]


@pytest.mark.parametrize("make, change, setting", [
    (_sweep, {"precision": "bf16"}, "precision='fp32', not 'bf16'"),
    (_sweep, {"budget_s": 0.1}, "budget_s=0.05, not 0.1"),
    (_grid, {"momentum": 0.5}, "grid.momentum=0.0, not 0.5"),
    (_grid, {"precision": "bf16"}, "grid.precision='fp32', not 'bf16'"),
])
def test_sweep_and_training_grid_refuse_other_settings_in_the_same_words(tmp_path, make, change, setting):
    resume = make(tmp_path, **change)
    with pytest.raises(BenchError) as e:
        resume()
    message = str(e.value)
    assert f"it was made with {setting}; resume with the same settings or write a new file" in message
    assert message.startswith("cannot resume ") and "\n" not in message


def test_a_sweep_and_a_training_grid_grow_on_resume(tmp_path):
    from bench.measure.tasks import nqm
    from bench.run.sweep import SweepConfig, run_sweep
    from bench.run.train.runner import GridSpec, RunConfig, run_grid

    settings = dict(device="cpu", min_samples=6, min_time_s=0.005, budget_s=0.05, warmup_max_s=0.05, telemetry=False)
    out = tmp_path / "sweep.json"
    run_sweep(SweepConfig(batch_sizes=[2], **settings), workload=_tiny_workload(), output=out)
    grown = run_sweep(SweepConfig(batch_sizes=[2, 4], **settings), workload=_tiny_workload(), output=out, resume=True)
    assert [p.batch_size for p in grown.points] == [2, 4]

    out = tmp_path / "curves.json"
    grid = dict(base_lr=0.5, base_batch_size=4, lr_rule="constant", momentum=0.0)
    config = RunConfig(target=0.5, max_steps=3, eval_every=1)
    run_grid(nqm(dim=5), GridSpec(batch_sizes=[4], **grid), config, output=out)
    cf = run_grid(nqm(dim=5), GridSpec(batch_sizes=[4, 8], seeds=[0, 1], **grid), config, output=out, resume=True)
    assert sorted((c.batch_size, c.seed) for c in cf.curves) == [(4, 0), (4, 1), (8, 0), (8, 1)]
    assert cf.finished and cf.config["grid"]["batch_sizes"] == [4, 8]
