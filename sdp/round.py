"""`python -m sdp.round`: one round of self-distillation from proof, resumable, looped.

Round k: sample N candidates per training problem with the current policy (or a teacher)
-> verify each -> select (verified, distinct, capped) -> SFT -> evaluate on the held-out set
-> metrics.json. Round 0 is the baseline evaluation of the base model. Every stage writes
atomically and is recorded in `runs/<name>/manifest.json`; a re-started job skips completed
stages and resumes at the first unfinished one, with the same seeded results.

    python -m sdp.round                        # the embedded default (3 rounds)
    python -m sdp.round --config my.yaml --rounds 5
    python -m sdp.round --config my.yaml --round 2   # run (or resume) round 2 only
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from sdp.config import RoundConfig, config_fingerprint, parse_config
from sdp.stages.evaluate import evaluate_model, format_scores, sample_job
from sdp.sources.problems import ProblemError, load_problems, subset
from sdp.rundir import RunDir, atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from sdp.stages.select import select, sft_pairs
from sdp.launch.process import run_stage
from sdp.stages.summary import write_summary

logger = logging.getLogger("sdp.round")

TRAIN_STAGES = ("sample", "verify", "select", "train", "evaluate")
PREFETCH = "samples.prefetch.json"


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished child, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, child) / 1024, 1)


def run_stage_once(run: RunDir, k: int, name: str, fn: Callable[[], tuple[dict, str]]) -> dict:
    """Run `fn` unless the manifest has the stage; record its info, timing and peak RSS; log one line."""
    if run.done(k, name):
        logger.info("round %d %-8s | done earlier, skipped", k, name)
        return run.info(k, name)
    start = time.perf_counter()
    info, message = fn()
    info["seconds"] = round(time.perf_counter() - start, 3)
    info["peak_rss_mb"] = peak_rss_mb()
    run.mark_done(k, name, info)
    logger.info("round %d %-8s | %s | %.1f s", k, name, message, info["seconds"])
    return info


def _rel(run: RunDir, path: str | Path) -> str:
    """Paths inside the run directory are stored relative to it, so a run dir can move."""
    path = Path(path)
    try:
        return "@run/" + str(path.resolve().relative_to(run.root.resolve()))
    except ValueError:
        return str(path)


def _abs(run: RunDir, path: str) -> str:
    return str(run.root / path[len("@run/") :]) if path.startswith("@run/") else path


def policy(run: RunDir, cfg: RoundConfig, k: int) -> str:
    """The model after round k (round 0: the base model)."""
    return cfg.model if k == 0 else _abs(run, run.info(k, "train")["checkpoint"])


def check_run_config(run: RunDir, cfg: RoundConfig) -> None:
    """Save the config; refuse to continue a run directory made with different settings."""
    path = run.root / "config.yaml"
    fingerprint_path = run.root / "config.fingerprint.json"
    fingerprint = config_fingerprint(cfg)
    if fingerprint_path.exists() and fingerprint_path.read_text() != fingerprint and run.manifest:
        raise SystemExit(
            f"{run.root} was started with a different configuration (see {path}); resuming it with these settings "
            "would mix results. Use another --name, or the same settings."
        )
    atomic_write_text(fingerprint_path, fingerprint)
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def check_model_path(field_name: str, model: str | None) -> None:
    """Fail early on a local model path that is not there (a hub id like `org/name` is left to vLLM)."""
    if model is None or Path(model).exists():
        return
    parent = Path(model).parent
    if model.startswith((".", "/")) or (str(parent) != "." and parent.exists()):
        hint = ""
        if model == RoundConfig.model and Path("data/train_base.py").exists():
            hint = " (the embedded default's model is built by `python -m data.train_base`)"
        raise SystemExit(f"--{field_name} {model}: no such model directory{hint}")


def plan_rounds(run: RunDir, cfg: RoundConfig) -> list[int]:
    done = run.completed_rounds()
    if cfg.round is not None:
        missing = [j for j in range(1, cfg.round) if j not in done]
        if missing:
            raise SystemExit(
                f"cannot run round {cfg.round}: earlier round(s) {missing} are not complete in {run.root}"
            )
        return [cfg.round]
    first = max(done, default=0) + 1
    return list(range(first, cfg.rounds + 1))


def train_sampling_task(run: RunDir, cfg: RoundConfig, k: int, train_all: list[dict]) -> dict:
    """Round k's candidate-sampling task for `sdp.stages.sample` (writes the round's problems file)."""
    rdir = run.round_dir(k)
    problems = subset(train_all, cfg.max_train_problems, seed=cfg.seed * 1000 + k)
    atomic_write_jsonl(rdir / "problems.jsonl", problems)
    return {
        "problems": str(rdir / "problems.jsonl"),
        "output": str(rdir / "samples.jsonl"),
        "sampling": cfg.sampling or {},
        "seed_tag": f"train-{k}",
    }


def prefetch_spec(cfg: RoundConfig, model: str, task: dict) -> dict:
    """Everything that determines a task's samples; a prefetched file is used only if this matches."""
    spec = {"model": model, "engine_args": cfg.engine_args, "seed": cfg.seed, "backend": cfg.backend, **task}
    return json.loads(json.dumps(spec))


def evaluate_stage(
    run: RunDir, cfg: RoundConfig, k: int, model: str, eval_set: list[dict], prefetch: dict | None = None
) -> dict:
    """Held-out evaluation of `model`; `prefetch` (the next round's sampling task) shares its engine."""

    def fn() -> tuple[dict, str]:
        if not eval_set:
            return {"eval": {}}, "no held-out set"
        scores, records = evaluate_model(
            cfg, model, eval_set, run.round_dir(k), also=[prefetch] if prefetch else []
        )
        note = ""
        if prefetch:
            # Written after the samples are in place: the next round's sample stage trusts only this.
            atomic_write_json(
                Path(prefetch["output"]).with_name(PREFETCH), prefetch_spec(cfg, model, prefetch)
            )
            note = f" (+ round {k + 1}'s candidates on the same engine)"
        return {
            "eval": scores,
            "eval_samples": len(records),
        }, f"{len(records)} samples{note}: " + format_scores(scores)

    return run_stage_once(run, k, "evaluate", fn)


def run_baseline(run: RunDir, cfg: RoundConfig, eval_set: list[dict], prefetch: dict | None) -> None:
    info = evaluate_stage(run, cfg, 0, cfg.model, eval_set, prefetch)
    if not run.done(0, "metrics"):
        metrics = {
            "round": 0,
            "model": cfg.model,
            "eval": info["eval"],
            "timings": {"evaluate": info["seconds"]},
            "peak_rss_mb": info["peak_rss_mb"],
        }
        atomic_write_json(run.round_dir(0) / "metrics.json", metrics)
        run.mark_done(0, "metrics", {"metrics": "round-0/metrics.json"})


def next_round_task(
    run: RunDir, cfg: RoundConfig, k: int, planned: list[int], train_all: list[dict]
) -> dict | None:
    """Round k+1's sampling task when round k's evaluation can draw it (same model, not yet sampled)."""
    if (
        cfg.teacher_model is not None
        or k + 1 not in planned
        or run.done(k + 1, "sample")
        or run.done(k, "evaluate")
    ):
        return None
    return train_sampling_task(run, cfg, k + 1, train_all)


def run_round(
    run: RunDir, cfg: RoundConfig, k: int, train_all: list[dict], eval_set: list[dict], planned: list[int]
) -> dict:
    run.clean_partial(k)
    rdir = run.round_dir(k)
    sampler = cfg.teacher_model or policy(run, cfg, k - 1)

    def sample() -> tuple[dict, str]:
        task = train_sampling_task(run, cfg, k, train_all)
        marker = rdir / PREFETCH
        prefetched = (
            marker.exists()
            and (rdir / "samples.jsonl").exists()
            and json.loads(marker.read_text()) == prefetch_spec(cfg, sampler, task)
        )
        if not prefetched:
            job = sample_job(
                sampler,
                Path(task["problems"]),
                Path(task["output"]),
                task["sampling"],
                cfg.engine_args or {},
                cfg.seed,
                task["seed_tag"],
                cfg.backend,
                cfg.progress,
            )
            run_stage("sdp.stages.sample", job, rdir / "sample.job.json", env=cfg.vllm_env)
        problems = sum(1 for _ in (rdir / "problems.jsonl").open())
        n = sum(1 for _ in (rdir / "samples.jsonl").open())
        how = f"drawn with round {k - 1}'s evaluation" if prefetched else sampler
        return {
            "problems": problems,
            "samples": n,
            "sampler_model": sampler,
            "prefetched": prefetched,
        }, f"{problems} problems -> {n} samples ({how})"

    def verify() -> tuple[dict, str]:
        from sdp.stages.verify import summarize, verify_records

        records = verify_records(
            read_jsonl(rdir / "samples.jsonl"),
            verifier=cfg.verifier,
            workers=cfg.verify_workers,
            timeout=cfg.verify_timeout,
            progress=cfg.progress,
        )
        atomic_write_jsonl(rdir / "verdicts.jsonl", records)
        counts = summarize(records)
        return (
            dict(counts),
            f"{counts['total']} samples: {counts['ok']} ok, {counts['wrong']} wrong, "
            f"{counts['unverifiable']} unverifiable",
        )

    def select_() -> tuple[dict, str]:
        from transformers import AutoTokenizer

        from sdp.stages.sample import render_prompt

        chosen = select(read_jsonl(rdir / "verdicts.jsonl"), cfg.max_per_problem)
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        atomic_write_jsonl(rdir / "sft.jsonl", sft_pairs(chosen.kept, lambda p: render_prompt(tokenizer, p)))
        atomic_write_json(rdir / "solve_rates.json", chosen.solve_rates)
        c = chosen.counts
        info = {**c, "train_pass_rate": round(chosen.train_pass_rate, 6)}
        return (
            info,
            f"kept {c['kept']} of {c['ok']} verified ({c['duplicates']} duplicates, {c['capped']} over cap, "
            f"{c['unverifiable']} unverifiable dropped); {c['problems_solved']}/{c['problems']} problems solved",
        )

    def train() -> tuple[dict, str]:
        init = cfg.model if cfg.init_from == "base" else policy(run, cfg, k - 1)
        kept = sum(1 for _ in (rdir / "sft.jsonl").open())
        if kept == 0:
            logger.warning(
                "round %d: no verified traces to train on; the checkpoint is the initial model %s", k, init
            )
            return {"checkpoint": _rel(run, init), "trained": False, "examples": 0}, "nothing to train on"
        kd = dict(cfg.kd) if cfg.kd else None
        if kd:
            kd.setdefault("teacher_model", cfg.teacher_model)
        job = {
            "init_model": init,
            "sft_path": str(rdir / "sft.jsonl"),
            "output": str(rdir / "checkpoint"),
            "work_dir": str(rdir / "trainer"),
            "stats": str(rdir / "train_stats.json"),
            "sft_args": cfg.sft,
            "seed": cfg.seed + k,
            "lora": cfg.lora,
            "kd": kd,
            "progress": cfg.progress,
        }
        run_stage("sdp.stages.train", job, rdir / "train.job.json")
        stats = json.loads((rdir / "train_stats.json").read_text())
        shutil.rmtree(rdir / "trainer", ignore_errors=True)
        return (
            {"checkpoint": _rel(run, rdir / "checkpoint"), "trained": True, "init_model": init, **stats},
            f"{stats['examples']} examples, {stats['steps']} steps, loss {stats['train_loss']:.4f} (from {init})",
        )

    infos = {
        "sample": run_stage_once(run, k, "sample", sample),
        "verify": run_stage_once(run, k, "verify", verify),
        "select": run_stage_once(run, k, "select", select_),
        "train": run_stage_once(run, k, "train", train),
    }
    prefetch = next_round_task(run, cfg, k, planned, train_all)
    infos["evaluate"] = evaluate_stage(run, cfg, k, policy(run, cfg, k), eval_set, prefetch)
    metrics = {
        "round": k,
        "model": _abs(run, infos["train"]["checkpoint"]),
        "sampler_model": infos["sample"]["sampler_model"],
        "init_from": cfg.init_from,
        "problems": infos["sample"]["problems"],
        "samples": infos["sample"]["samples"],
        "verified_ok": infos["verify"]["ok"],
        "wrong": infos["verify"]["wrong"],
        "unverifiable": infos["verify"]["unverifiable"],
        "duplicates": infos["select"]["duplicates"],
        "kept": infos["select"]["kept"],
        "problems_solved": infos["select"]["problems_solved"],
        "train_pass_rate": infos["select"]["train_pass_rate"],
        "train_loss": infos["train"].get("train_loss"),
        "eval": infos["evaluate"]["eval"],
        "timings": {name: infos[name]["seconds"] for name in TRAIN_STAGES},
        "peak_rss_mb": max(info["peak_rss_mb"] for info in infos.values()),
    }
    if not run.done(k, "metrics"):
        atomic_write_json(rdir / "metrics.json", metrics)
        run.mark_done(k, "metrics", {"metrics": f"round-{k}/metrics.json"})
    return metrics


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_config(argv if argv is not None else sys.argv[1:])
    try:
        train_all = load_problems(cfg.train_problems, cfg.train_split)
        eval_set = (
            subset(load_problems(cfg.eval_problems, cfg.eval_split), cfg.max_eval_problems, cfg.seed)
            if cfg.eval_problems
            else []
        )
    except ProblemError as exc:
        raise SystemExit(f"bad problem set: {exc}") from exc
    overlap = {p["id"] for p in train_all} & {p["id"] for p in eval_set}
    if overlap:
        raise SystemExit(f"held-out problems also in the training set: {sorted(overlap)[:5]}")
    for field_name in ("model", "teacher_model"):
        check_model_path(field_name, getattr(cfg, field_name))
    run = RunDir(Path(cfg.output_dir) / cfg.name)
    check_run_config(run, cfg)
    rounds = plan_rounds(run, cfg)
    logger.info(
        "run %s: %d training problems, %d held-out; rounds to run: %s",
        run.root,
        len(train_all),
        len(eval_set),
        rounds or "none (all done)",
    )
    if eval_set:
        run_baseline(run, cfg, eval_set, next_round_task(run, cfg, 0, rounds, train_all))
    for k in rounds:
        metrics = run_round(run, cfg, k, train_all, eval_set, rounds)
        logger.info(
            "round %d done: kept %d, train pass rate %.3f, held-out %s",
            k,
            metrics["kept"],
            metrics["train_pass_rate"],
            format_scores(metrics["eval"]) or "-",
        )
    table = write_summary(run.root)
    print(table)


if __name__ == "__main__":
    main()
