"""`python -m sdp.round`: one round of self-distillation from proof, resumable, looped.

Round k: sample N candidates per training problem with the current policy (or a teacher)
-> verify each -> select (verified, distinct, capped) -> SFT -> evaluate on the held-out set
-> metrics.json. Round 0 is the baseline evaluation of the base model. Each stage is a plain
function in `sdp.round_stages`; each is recorded in `runs/<name>/manifest.json` when done, and a re-started job
skips completed stages. Sampling and verification work in shards (`sdp.shards`): finished shards
are verified while later ones are drawn, and a stage killed part-way redoes only its unfinished
shards, with the same seeded results. The pass-through sections of the config are checked
(`sdp.preflight`) before any work starts.

    python -m sdp.round                        # the embedded default (3 rounds)
    python -m sdp.round --config my.yaml --rounds 5
    python -m sdp.round --config my.yaml --round 2   # run (or resume) round 2 only
    python -m sdp.round --config my.yaml --dry_run   # the resolved config, prompts, counts, shard plan (sdp.dryrun)
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from sdp.config import RoundConfig, parse_config
from sdp.dryrun import dry_run_report
from sdp.fingerprint import changed, config_fingerprint, refusal, rewind, rewind_stage
from sdp.launch.process import INTERRUPTED, StageError, run_stage
from sdp.logs import setup_logging
from sdp.round_stages import (
    evaluate_stage,
    policy,
    ray_options,
    round_metrics,
    sample_and_verify,
    sampling_task,
    select_stage,
    train_shards,
    train_stage,
)
from sdp.rundir import MANIFEST, RunDir, atomic_write_json, atomic_write_text
from sdp.sources.problems import ProblemError, load_problems, subset
from sdp.stages.evaluate import format_scores
from sdp.stages.sample import SampleTask
from sdp.stages.summary import write_summary

logger = logging.getLogger("sdp.round")
# A RoundConfig, or the fields of one that sdp.evaluate.EvalConfig holds (both have to_dict()).
RunConfig = Any

def check_run_config(run: RunDir, cfg: RunConfig) -> str | None:
    """The stage to rewind to when only a later stage's settings changed (`sdp.fingerprint`), else None;
    refuse to continue a run directory made with settings that change its samples, naming the fields.

    `cfg`: a round's config, or an evaluation's (`sdp.evaluate.EvalConfig`, whose run is a baseline only)."""
    fingerprint_path = run.root / "config.fingerprint.json"
    fingerprint = config_fingerprint(cfg)
    if not (fingerprint_path.exists() and fingerprint_path.read_text() != fingerprint and run.manifest):
        return None
    saved = fingerprint_path.read_text()
    stage = rewind_stage(saved, fingerprint)
    if stage is None:
        raise SystemExit(refusal(str(run.root), saved, fingerprint))
    return stage


def apply_rewind(run: RunDir, cfg: RunConfig, stage: str) -> None:
    """Forget what the changed settings invalidate, keeping what they do not feed (samples and verdicts)."""
    fingerprint_path = run.root / "config.fingerprint.json"
    fields = ", ".join(f"{name}: {change}" for name, change in changed(fingerprint_path.read_text(),
                                                                       config_fingerprint(cfg)))
    # An evaluation's config has no teacher_model (its run has no training rounds).
    what = rewind(run, stage, teacher_sampled=getattr(cfg, "teacher_model", None) is not None)
    logger.info("settings changed (%s): re-running %s", fields, what)


def save_run_config(run: RunDir, cfg: RunConfig) -> None:
    """Record the settings of the run (after the preflight accepted them, so a rejected config leaves none)."""
    atomic_write_text(run.root / "config.fingerprint.json", config_fingerprint(cfg))
    atomic_write_text(run.root / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


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


def preflight(run: RunDir, cfg: RunConfig) -> None:
    """Check every pass-through section and model now (`sdp.preflight`, in a child: no model loaded here)."""
    try:
        run_stage("sdp.preflight", cfg.to_dict(), run.root / "preflight.job.json")
    except StageError:
        raise SystemExit("the configuration was rejected before any work (the error above names the field); "
                         "nothing was run") from None


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


def next_round_task(
    run: RunDir, cfg: RoundConfig, k: int, planned: list[int], train_all: list[dict]
) -> SampleTask | None:
    """Round k+1's sampling task when round k's evaluation can draw it (same model, one engine start)."""
    if (
        cfg.teacher_model is not None
        or k + 1 not in planned
        or run.done(k + 1, "sample")
        or run.done(k, "evaluate")
    ):
        return None
    return sampling_task(cfg, train_shards(run, cfg, k + 1, train_all), k + 1)


def run_baseline(run: RunDir, cfg: RoundConfig, eval_set: list[dict], also: SampleTask | None) -> None:
    info = evaluate_stage(run, cfg, 0, cfg.model, eval_set, also)
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


def check_contamination(cfg: RoundConfig, train_all: list[dict], eval_set: list[dict]) -> tuple[list[dict], dict]:
    """Training problems after the n-gram check against the held-out set, and the report (sdp.sources.decontaminate)."""
    if cfg.decontaminate == "none" or not eval_set:
        return train_all, {}
    from sdp.sources.decontaminate import ContaminationError, decontaminate

    try:
        kept, report = decontaminate(train_all, eval_set, n=cfg.decontaminate_ngram, mode=cfg.decontaminate,
                                     min_overlap=cfg.decontaminate_min_overlap)
    except ContaminationError as exc:
        raise SystemExit(f"decontaminate: error: {exc}") from exc
    return kept, report.to_dict()


def run_round(
    run: RunDir, cfg: RoundConfig, k: int, train_all: list[dict], eval_set: list[dict], planned: list[int]
) -> dict:
    """Round k, stage by stage; each stage already in the manifest is skipped."""
    run.clean_partial(k)
    plan = train_shards(run, cfg, k, train_all)
    sampler = cfg.teacher_model or policy(run, cfg, k - 1)
    infos: dict[str, dict] = {}
    infos["sample"], infos["verify"] = sample_and_verify(run, cfg, k, plan, sampler)
    infos["select"] = select_stage(run, cfg, k, plan)
    infos["train"] = train_stage(run, cfg, k)
    also = next_round_task(run, cfg, k, planned, train_all)
    infos["evaluate"] = evaluate_stage(run, cfg, k, policy(run, cfg, k), eval_set, also)
    metrics = round_metrics(run, cfg, k, infos)
    if not run.done(k, "metrics"):
        atomic_write_json(run.round_dir(k) / "metrics.json", metrics)
        run.mark_done(k, "metrics", {"metrics": f"round-{k}/metrics.json"})
    return metrics


def main(argv: list[str] | None = None) -> None:
    """The command: a config error is one line, Ctrl-C says how to resume (no traceback either way)."""
    setup_logging()
    try:
        cfg = parse_config(argv if argv is not None else sys.argv[1:])
    except ValueError as exc:  # every config check raises ValueError naming the field
        raise SystemExit(f"error: {exc}") from None
    try:
        run_all(cfg)
    except KeyboardInterrupt:
        # Every file is written atomically and each finished stage is in the manifest: nothing to clean up.
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        raise SystemExit(130) from None


def dry_run(cfg: RoundConfig, train_all: list[dict], eval_set: list[dict]) -> str:
    """The `--dry_run` report (`sdp.dryrun`); an existing run directory is read (a refused resume fails here too)."""
    root = Path(cfg.output_dir) / cfg.name
    if not (root / MANIFEST).exists():
        rounds = [cfg.round] if cfg.round is not None else list(range(1, cfg.rounds + 1))
        return dry_run_report(cfg, root, train_all, eval_set, rounds, note=" (new)")
    run = RunDir(root)
    stage = check_run_config(run, cfg)
    note = f" (exists; these settings re-run from the {stage} stage)" if stage else " (exists; resumed)"
    rounds = plan_rounds(run, cfg)
    if stage:  # the completed rounds are re-run from that stage too
        rounds = sorted(set(run.completed_rounds()) | set(rounds))
    return dry_run_report(cfg, root, train_all, eval_set, rounds, note=note)


def run_all(cfg: RoundConfig) -> None:
    """Load the problems, check the config, run the planned rounds, write the summary."""
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
    train_all, contamination = check_contamination(cfg, train_all, eval_set)
    if cfg.dry_run:  # before the run directory is made: a dry run writes nothing
        print(dry_run(cfg, train_all, eval_set))
        return
    run = RunDir(Path(cfg.output_dir) / cfg.name)
    pending = check_run_config(run, cfg)
    if pending or plan_rounds(run, cfg) or not run.done(0, "metrics"):
        preflight(run, cfg)
    if pending:  # only once the new settings passed the preflight
        apply_rewind(run, cfg, pending)
    save_run_config(run, cfg)
    rounds = plan_rounds(run, cfg)
    if contamination:
        atomic_write_json(run.root / "decontamination.json", contamination)
    logger.info(
        "run %s: %d training problems, %d held-out; rounds to run: %s",
        run.root,
        len(train_all),
        len(eval_set),
        rounds or "none (all done)",
    )
    from sdp.tracking import RoundTracker

    started_ray = False
    if cfg.executor == "ray" and rounds:
        from sdp.launch.ray_executor import init_ray

        started_ray = init_ray(ray_options(cfg))
    try:
        with RoundTracker(cfg.report_to, run.root, run_name=cfg.name, config=cfg.to_dict()) as tracker:
            if eval_set:
                run_baseline(run, cfg, eval_set, next_round_task(run, cfg, 0, rounds, train_all))
                tracker.log_round(json.loads((run.round_dir(0) / "metrics.json").read_text()))
            for k in rounds:
                metrics = run_round(run, cfg, k, train_all, eval_set, rounds)
                tracker.log_round(metrics)
                logger.info(
                    "round %d done: kept %d, train pass rate %.3f, held-out %s",
                    k,
                    metrics["kept"],
                    metrics["train_pass_rate"],
                    format_scores(metrics["eval"]) or "-",
                )
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    print_summary(run)


def print_summary(run: RunDir) -> None:
    """Write the run's summary (`sdp.stages.summary`), print its table and, last, where its files are."""
    print(write_summary(run.root))
    summary = run.root / "summary"
    print(f"summary: {summary / 'table.md'}, {summary / 'summary.json'}, {summary / 'accuracy.png'}")


if __name__ == "__main__":
    main()
