"""`make run`'s job with its stage breakdown, for one or more revisions side by side in one run.

    .venv/bin/python -m benchmarks.bench_round [--rev a913fb6 --rev HEAD] [--repeat 1]
                                               [--rounds 3 --problems 3000 --eval 400 --steps 300]

Each revision is checked out (detached) in a scratch git worktree, and `python -m sdp.round` runs
there on that revision's `configs/default.yaml` with only the size fields overridden (the defaults
are `make run`'s own sizes), under `/usr/bin/time -v` for wall time and peak RSS, with this
interpreter and `PYTHONPATH` set to the worktree. With `--repeat R` the revisions alternate R
times, so a loaded machine slows each about equally. `--rev .` is the working tree as it is.

The breakdown comes from the run's log lines and files, so it also reads old revisions:
the combined evaluation + next sampling stages, split into the sampler's own time per shard set
(its "shards of ... in ... s" lines) and the rest (engine start and imports, verification after
sampling), training-sample tokens/s over the sampler's time (completion tokens of the round's
sample shards), the verify stage and the share of training shards verified under sampling (when
the manifest records `shards_verified_earlier`), selection, the luck pass (newer revisions), SFT
steps/s (`train_stats.json`), CPU seconds per role over the process tree (sampler, trainer,
verification workers and the rest, the round process), and the held-out figures of the last round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"round (\d+) (\w+)\s*\| (.*) \| ([\d.]+) s$")
# The sampler's line per shard set: "<n> shards of <dir> in <t> s" (the held-out set's dir ends in /eval).
TASK_LINE = re.compile(r"\d+ shards of (\S+) in ([\d.]+) s")
TIME_LINE = re.compile(r"^\s*(Elapsed \(wall clock\) time|Maximum resident set size).*: (.+)$", re.M)


def worktree(rev: str, scratch: Path) -> Path:
    """A detached checkout of `rev` (`.`: this working tree), with the git-ignored data links this one has."""
    if rev == ".":
        return REPO
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    path = scratch / f"rev-{commit}"
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)  # fmt: skip
    return path


def run_config(tree: Path, out: Path, args: argparse.Namespace) -> Path:
    """The revision's own default config with the benchmark's sizes and a scratch output directory."""
    cfg = yaml.safe_load((tree / "configs" / "default.yaml").read_text())
    cfg.update(name="bench", output_dir=str(out), rounds=args.rounds, max_train_problems=args.problems,
               max_eval_problems=args.eval, progress=False)  # fmt: skip
    cfg["sft"] = {**cfg["sft"], "max_steps": args.steps}
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


ROLES = (("sampler", "sdp.stages.sample"), ("train", "sdp.stages.train"), ("round", "sdp.round"))


def role(cmdline: list[str]) -> str:
    """Which part of the job a process is: the sampler, the trainer, the round's own process, or verification
    (its pool workers, the sympy children and the sandbox under them)."""
    text = " ".join(cmdline)
    for name, module in ROLES:
        if f"-m {module}" in text:
            return name
    return "verify+other"


def run_polled(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, dict[str, float]]:
    """Run `cmd` with output to `log`; CPU seconds per role over its process tree, polled every 0.2 s.

    A process's last fraction of a poll interval before it exits is not seen; against the stage
    children's many seconds that is noise, and it is the same for every revision.
    """
    seen: dict[int, tuple[str, float]] = {}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        top = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = top.children(recursive=True)
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        name = seen[p.pid][0] if p.pid in seen else role(p.cmdline())
                    seen[p.pid] = (name, t.user + t.system)
                except psutil.Error:
                    continue
            time.sleep(0.2)
    cpu: dict[str, float] = {}
    for name, seconds in seen.values():
        cpu[name] = round(cpu.get(name, 0.0) + seconds, 1)
    return proc.returncode, cpu


def wall_seconds(text: str) -> float:
    parts = [float(p) for p in text.strip().split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def completion_tokens(rdir: Path) -> int:
    """Completion tokens of a round's training samples (shard files, or one samples.jsonl before shards)."""
    total = 0
    for path in [*rdir.glob("samples/*.jsonl"), *rdir.glob("samples.jsonl")]:
        with open(path, encoding="utf-8") as fh:
            total += sum(json.loads(line).get("completion_tokens") or 0 for line in fh if line.strip())
    return total


def measure(rev: str, tree: Path, args: argparse.Namespace) -> dict:
    """One run of the job at `tree`; its wall time, peak RSS and breakdown."""
    out = Path(tempfile.mkdtemp(prefix="bench_round-", dir=args.scratch))
    config = run_config(tree, out, args)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    rc, cpu = run_polled(["/usr/bin/time", "-v", sys.executable, "-m", "sdp.round", "--config", str(config)],
                         tree, env, out / "log.txt")
    log = (out / "log.txt").read_text()
    if rc != 0:
        raise SystemExit(f"{rev}: sdp.round failed (rc {rc}); log: {out / 'log.txt'}\n{log[-3000:]}")
    timing = dict(TIME_LINE.findall(log))
    times = dict(re.findall(r"^\s*(User time|System time) \(seconds\): ([\d.]+)$", log, re.M))
    stages: dict[str, list[float]] = {}
    for line in log.splitlines():
        m = STAGE_LINE.search(line)
        if m and "skipped" not in m.group(3):
            stages.setdefault(m.group(2), []).append(float(m.group(4)))
    run = out / "bench"
    manifest = json.loads((run / "manifest.json").read_text())
    result = {
        "rev": rev,
        "wall_s": wall_seconds(timing["Elapsed (wall clock) time"]),
        "peak_rss_mb": round(int(timing["Maximum resident set size"]) / 1024, 1),
        "cpu_s": round(float(times["User time"]) + float(times["System time"]), 1),
        "cpu_by_role_s": cpu,
        "sampling_s": {"eval": sum(float(t) for d, t in TASK_LINE.findall(log) if d.endswith("/eval")),
                       "train": sum(float(t) for d, t in TASK_LINE.findall(log) if not d.endswith("/eval"))},
        "stages": stages,
        "rounds": [],
        "log": str(out / "log.txt"),
    }
    for k in range(1, args.rounds + 1):
        rdir = run / f"round-{k}"
        sample_tokens = completion_tokens(rdir)
        stats_path = rdir / "train_stats.json"
        train = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        metrics = json.loads((rdir / "metrics.json").read_text())
        verify_info = manifest.get(f"round-{k}/verify", {})
        result["rounds"].append({
            "sample_tokens": sample_tokens,
            "verify_seconds": verify_info.get("verify_seconds"),
            "shards": manifest.get(f"round-{k}/sample", {}).get("shards"),
            "shards_verified_earlier": verify_info.get("shards_verified_earlier"),
            "samples": metrics.get("samples"),
            "train_seconds": train.get("train_seconds"),
            "steps": train.get("steps"),
            "autocast": train.get("autocast"),
            "timings": metrics.get("timings", {}),
            "eval": metrics.get("eval", {}),
        })
    return result


def figures(result: dict) -> str:
    """The held-out figures of the last round, as the round's log prints them."""
    ev = result["rounds"][-1]["eval"] if result["rounds"] else {}
    return "; ".join(f"{d} {s.get('pass@1')}/{s.get('pass@k')}/{s.get('maj@k')}" for d, s in sorted(ev.items()))


def rows(result: dict, steps: int, problems: int, n: int) -> dict[str, float | None]:
    """The breakdown as flat, comparable numbers (sums over rounds; rates from sums)."""
    st = result["stages"]
    tot = {name: round(sum(v), 1) for name, v in st.items()}
    rounds = result["rounds"]
    tokens = sum(r["sample_tokens"] for r in rounds)
    train_sampling = result["sampling_s"]["train"]
    train_s = sum(r["train_seconds"] or 0 for r in rounds)
    verify_s = tot.get("verify", 0.0)
    earlier = [r["shards_verified_earlier"] for r in rounds if r["shards_verified_earlier"] is not None]
    shards = sum(r["shards"] or 0 for r in rounds)
    # Revisions before the overlap on the evaluation path record no such count: all their shards were verified after.
    under = sum(earlier) / shards if shards else None
    cpu = result["cpu_by_role_s"]
    return {
        "wall s": result["wall_s"],
        "CPU s (user+sys, whole tree)": result["cpu_s"],
        "CPU s sampler processes": cpu.get("sampler"),
        "CPU s train processes": cpu.get("train"),
        "CPU s verification + other": cpu.get("verify+other"),
        "CPU s round process": cpu.get("round"),
        "peak RSS MB": result["peak_rss_mb"],
        "evaluate (+ next sampling) stages s": tot.get("evaluate"),
        "  of which the sampler sampled held-out s": round(result["sampling_s"]["eval"], 1),
        "  of which the sampler sampled train s": round(result["sampling_s"]["train"], 1),
        "  rest: engine starts, verification tail s": round(tot.get("evaluate", 0.0) + tot.get("sample", 0.0)
                                                        - sum(result["sampling_s"].values()), 1),
        "sample stage s (teacher / not prefetched)": tot.get("sample"),
        "train sampling tok/s (sampler's time)": round(tokens / train_sampling, 1) if train_sampling else None,
        "verify stage s": verify_s,
        "verify checks/s (stage)": round(problems * n * len(rounds) / verify_s, 1) if verify_s else None,
        "share of train shards verified under sampling": round(under, 2) if under is not None else None,
        "select s": tot.get("select"),
        "luck s": tot.get("luck"),
        "train stage s": tot.get("train"),
        "SFT steps/s": round(steps * len(rounds) / train_s, 2) if train_s else None,
    }


def speedup(name: str, first: float | None, this: float | None) -> str:
    """How many times better `this` is than `first`: first / this for seconds and sizes, this / first for rates."""
    if not first or not this or "engines" in name:
        return "-"
    return f"{(this / first if '/s' in name else first / this):.2f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", action="append", default=None,
                        help="revision (repeatable; '.' = the working tree; default: a913fb6 and '.')")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the revisions this many times")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--problems", type=int, default=3000, help="max_train_problems")
    parser.add_argument("--eval", type=int, default=None, help="max_eval_problems (default: all 400)")
    parser.add_argument("--steps", type=int, default=300, help="sft.max_steps")
    parser.add_argument("--scratch", default=None, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--json", default=None, help="also write every result to this file")
    args = parser.parse_args(argv)
    # a913fb6: the revision issue 32 timed at 706 s, before the speed work.
    revs = args.rev or ["a913fb6", "."]
    args.scratch = args.scratch or tempfile.mkdtemp(prefix="bench_round-")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    trees = {rev: worktree(rev, Path(args.scratch)) for rev in revs}
    results: dict[str, list[dict]] = {rev: [] for rev in revs}
    try:
        for i in range(args.repeat):
            for rev in revs:
                result = measure(rev, trees[rev], args)
                results[rev].append(result)
                print(f"[{i + 1}/{args.repeat}] {rev}: {result['wall_s']:.1f} s wall, {result['cpu_s']} CPU s, "
                      f"{result['peak_rss_mb']} MB peak RSS; held-out {figures(result)}", flush=True)  # fmt: skip
    finally:
        for tree in trees.values():
            if tree != REPO:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    table = {rev: [rows(r, args.steps, args.problems, 8) for r in rs] for rev, rs in results.items()}
    names = list(next(iter(table.values()))[0])
    print(f"\nbench_round: {args.rounds} rounds x {args.problems} problems, {args.steps} SFT steps; "
          f"median of {args.repeat} alternated run(s) per revision; ratio: times better than {revs[0]} "
          "(>1: faster or smaller)")
    head = f"{'':44}" + "".join(f"{rev:>14}" for rev in revs) + "".join(f"{'ratio ' + r:>16}" for r in revs[1:])
    print(head)
    for name in names:
        vals = []
        for rev in revs:
            xs = sorted(x[name] for x in table[rev] if x[name] is not None)
            vals.append(xs[len(xs) // 2] if xs else None)
        cells = "".join(f"{'-' if v is None else v:>14}" for v in vals)
        ratios = "".join(f"{speedup(name, vals[0], v):>16}" for v in vals[1:])
        print(f"{name:44}{cells}{ratios}")
    for rev in revs:
        print(f"held-out ({rev}): " + " | ".join(figures(r) for r in results[rev]))


if __name__ == "__main__":
    main()
