"""Build the real-history test bed from snapshots of three public repositories (bare git directories,
e.g. from `git clone --mirror`), in the formats `bench history ingest` reads directly:

  django    django/django-asv, results/ubuntu-latest/*-py3.12.json: asv on GitHub's shared runners, raw samples
  empymod   emsig/empymod-bench, results/dtr-latitude/*: asv on one dedicated laptop, median with quartiles
  gab       benchmark-action/github-action-benchmark, gh-pages:dev/bench/data.js: value with a spread only

    python scripts/realhist_convert.py --mirrors /work/.mirror --out reports/realhist           # whole sources
    python scripts/realhist_convert.py --mirrors /work/.mirror --out tests/data/realhist --slice  # the test slice

The slice keeps a few series of each source (every run of them) and writes PROVENANCE.md with the
repository, commit and path each came from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

SOURCES = {
    "django": {"repo": "django/django-asv", "dir": "django+django-asv", "ref": "HEAD",
               "machine": "results/ubuntu-latest", "env_suffix": "-py3.12.json",
               "slice": ["query_benchmarks.query_all.benchmark.QueryAll.time_query_all",
                         "url_benchmarks.url_resolve.benchmark.UrlResolve.time_resolve"]},
    "empymod": {"repo": "emsig/empymod-bench", "dir": "emsig+empymod-bench", "ref": "HEAD",
                "machine": "results/dtr-latitude", "env_suffix": "-py3.6-numpy1.17.json",
                "slice": ["kernel.Kernel.time_fields",
                          "transform.Hankel.time_fht_standard"]},
    "gab": {"repo": "benchmark-action/github-action-benchmark", "dir": "benchmark-action+github-action-benchmark",
            "ref": "gh-pages", "path": "dev/bench/data.js",
            "slice": ["Rust Benchmark", "Python Benchmark with pytest-benchmark", "Benchmark.js Benchmark"]},
}


def git(gitdir: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True,
                          text=True).stdout


def show_many(gitdir: Path, specs: list[str]) -> list[str]:
    """`git show REF:PATH` for many paths in one `git cat-file --batch`."""
    proc = subprocess.run(["git", "--git-dir", str(gitdir), "cat-file", "--batch"], input=("\n".join(specs) + "\n").encode(),
                          capture_output=True, check=True)
    out, pos, data = [], 0, proc.stdout
    for _ in specs:
        nl = data.index(b"\n", pos)
        header = data[pos:nl].decode().split()
        size = int(header[2])
        out.append(data[nl + 1:nl + 1 + size].decode())
        pos = nl + 1 + size + 1
    return out


def _slim(row):
    """A slice's asv row: what the importer reads (format 1: result, stats' quartiles and repeat, samples)."""
    if isinstance(row, dict):
        out = {"result": row.get("result")}
        if isinstance(row.get("stats"), list):
            out["stats"] = [{k: s.get(k) for k in ("q_25", "q_75", "repeat")} if isinstance(s, dict) else s
                            for s in row["stats"]]
        if row.get("samples"):
            out["samples"] = row["samples"]
        return out
    if isinstance(row, list) and len(row) > 2:  # format 2: the benchmark's code hash is not needed
        return [None if i in (2, 12) else v for i, v in enumerate(row)]
    return row


def convert_asv(name: str, src: dict, gitdir: Path, out: Path, slice_: bool) -> dict:
    ref = src["ref"]
    commit = git(gitdir, "rev-parse", ref).strip()
    files = [f for f in git(gitdir, "ls-tree", "-r", "--name-only", ref, src["machine"]).split()
             if f.endswith(src["env_suffix"])]
    keep = set(src["slice"]) if slice_ else None
    root = out / name / "results"
    mdir = root / Path(src["machine"]).name
    mdir.mkdir(parents=True, exist_ok=True)
    bench_text, machine_text = show_many(gitdir, [f"{ref}:results/benchmarks.json", f"{ref}:{src['machine']}/machine.json"])
    benchmarks = json.loads(bench_text)
    if keep is not None:
        benchmarks = {k: v for k, v in benchmarks.items() if k in keep or k == "version"}
        for v in benchmarks.values():
            if isinstance(v, dict):
                v.pop("code", None)
    (root / "benchmarks.json").write_text(json.dumps(benchmarks, indent=None if keep else 1))
    (mdir / "machine.json").write_text(machine_text)
    for path, text in zip(files, show_many(gitdir, [f"{ref}:{f}" for f in files])):
        data = json.loads(text)
        if keep is not None:
            data["results"] = {k: _slim(v) for k, v in data["results"].items() if k in keep}
            for k in ("requirements", "durations", "ended_at", "benchmark_version", "profiles"):
                data.pop(k, None)
            if isinstance(data.get("started_at"), dict):  # format 1: when each benchmark ran
                data["started_at"] = {k: v for k, v in data["started_at"].items() if k in keep}
        (mdir / Path(path).name).write_text(json.dumps(data, separators=(",", ":")))
    return {"repo": src["repo"], "commit": commit, "path": f"{src['machine']}/*{src['env_suffix']}, results/benchmarks.json",
            "runs": len(files)}


def convert_gab(name: str, src: dict, gitdir: Path, out: Path, slice_: bool) -> dict:
    commit = git(gitdir, "rev-parse", src["ref"]).strip()
    text = git(gitdir, "show", f"{src['ref']}:{src['path']}")
    dest = out / name
    dest.mkdir(parents=True, exist_ok=True)
    if slice_:
        data = json.loads(text.strip().removeprefix("window.BENCHMARK_DATA =").strip())
        data["entries"] = {k: v for k, v in data["entries"].items() if k in src["slice"]}
        for runs in data["entries"].values():
            for e in runs:
                c = e.get("commit", {})
                e["commit"] = {k: c.get(k) for k in ("id", "message", "timestamp") if k in c}
                e["commit"]["message"] = (e["commit"].get("message") or "").splitlines()[0][:100]
        text = "window.BENCHMARK_DATA = " + json.dumps(data, separators=(",", ":"))
    (dest / "data.js").write_text(text)
    return {"repo": src["repo"], "commit": commit, "path": f"{src['ref']}:{src['path']}",
            "runs": {k: len(v) for k, v in json.loads(text.removeprefix("window.BENCHMARK_DATA =")
                                                      .strip())["entries"].items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirrors", default="/work/.mirror", help="folder holding OWNER+NAME/repo bare git dirs")
    ap.add_argument("--out", default="reports/realhist")
    ap.add_argument("--slice", action="store_true", help="only a few series per source (the tests' copy)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    prov = ["# Real benchmark histories (test bed slice)", "",
            "Written by `python scripts/realhist_convert.py --slice`; each source kept in its own format.", ""]
    for name, src in SOURCES.items():
        gitdir = Path(args.mirrors) / src["dir"] / "repo"
        conv = convert_gab if name == "gab" else convert_asv
        info = conv(name, src, gitdir, out, args.slice)
        print(f"{name}: {info}")
        prov += [f"- `{name}/`: https://github.com/{info['repo']} at commit {info['commit']}, {info['path']}; "
                 f"runs: {info['runs']}" + (f"; series kept: {', '.join(src['slice'])}" if args.slice else "")]
    if args.slice:
        (out / "PROVENANCE.md").write_text("\n".join(prov) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
