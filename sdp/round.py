"""`python -m sdp.round`: one round of self-distillation from proof, resumable, looped.

Round k: sample N candidates per training problem with the current policy (or a teacher)
-> verify each -> select (verified, distinct, capped) -> SFT -> evaluate on the held-out set
-> metrics.json. Round 0 is the baseline evaluation of the base model. Each stage is a plain
function below; each is recorded in `runs/<name>/manifest.json` when done, and a re-started job
skips completed stages. Sampling and verification work in shards (`sdp.shards`): finished shards
are verified while later ones are drawn, and a stage killed part-way redoes only its unfinished
shards, with the same seeded results. The pass-through sections of the config are checked
(`sdp.preflight`) before any work starts.

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
from typing import Any

import yaml
from tqdm.auto import tqdm

from sdp.config import RoundConfig, config_fingerprint, parse_config
from sdp.jsonl import JsonlWriter, count_lines, iter_jsonl
from sdp.launch.process import StageError, pause_point, run_stage, run_stage_while
from sdp.rundir import RunDir, atomic_write_json, atomic_write_text
from sdp.shards import ShardPlan, plan_shards
from sdp.sources.problems import ProblemError, load_problems, subset
from sdp.stages.evaluate import evaluate_model, format_scores
from sdp.stages.sample import SampleJob, SampleTask
from sdp.stages.select import Selector, sft_pair
from sdp.stages.summary import write_summary
from sdp.stages.verify import Verification, summarize

logger = logging.getLogger("sdp.round")

TRAIN_STAGES = ("sample", "verify", "select", "train", "evaluate")


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
    """The absolute form of a path stored by `_rel`."""
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


def preflight(run: RunDir, cfg: RoundConfig) -> None:
    """Build SFTConfig, SamplingParams, LoraConfig and the engine arguments now (in a child, no model loaded)."""
    try:
        run_stage("sdp.preflight", cfg.to_dict(), run.root / "preflight.job.json")
    except StageError as exc:
        raise SystemExit(f"the configuration was rejected before any work (see the error above): {exc}") from None


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


def train_shards(run: RunDir, cfg: RoundConfig, k: int, train_all: list[dict]) -> ShardPlan:
    """Round k's training problems (a fresh seeded subset), cut into shards in the round directory."""
    problems = subset(train_all, cfg.max_train_problems, seed=cfg.seed * 1000 + k)
    return plan_shards(problems, run.round_dir(k), cfg.shard_size)


def sampling_task(cfg: RoundConfig, plan: ShardPlan, k: int) -> SampleTask:
    return SampleTask(str(plan.root), dict(cfg.sampling or {}), f"train-{k}", cfg.template_fields())


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


def evaluate_stage(
    run: RunDir, cfg: RoundConfig, k: int, model: str, eval_set: list[dict], also: SampleTask | None = None
) -> dict:
    """Held-out evaluation of `model`; `also` (the next round's sampling task) shares its engine."""

    def fn() -> tuple[dict, str]:
        if not eval_set:
            return {"eval": {}}, "no held-out set"
        scores, samples = evaluate_model(cfg, model, eval_set, run.round_dir(k), also=[also] if also else [])
        note = f" (+ round {k + 1}'s candidates on the same engine)" if also else ""
        return {"eval": scores, "eval_samples": samples}, f"{samples} samples{note}: " + format_scores(scores)

    return run_stage_once(run, k, "evaluate", fn)


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


def ray_options(cfg: RoundConfig) -> Any:
    from sdp.launch.ray_executor import RayOptions

    return RayOptions(address=cfg.ray_address, replicas=cfg.replicas, env=dict(cfg.vllm_env or {}))


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


def sample_and_verify(run: RunDir, cfg: RoundConfig, k: int, plan: ShardPlan, sampler: str) -> tuple[dict, dict]:
    """The sample and verify stages of round k: finished shards are verified while later ones are drawn.

    Shards sampled earlier (by a killed run, or by round k-1's evaluation on the same model) are
    kept; only the others are drawn, and the sampler is not started when there are none.
    """
    rdir = run.round_dir(k)
    verify_seconds, verified = 0.0, 0
    bar = tqdm(total=plan.problems * int((cfg.sampling or {}).get("n", 1)), desc="verify", unit="rec",
               disable=not cfg.progress)  # fmt: skip
    with Verification(verifier=cfg.verifier, workers=cfg.verify_workers, timeout=cfg.verify_timeout) as verification:

        def verify_next() -> bool:
            nonlocal verify_seconds, verified
            ready = [s for s in plan.shards if s.done("samples") and not s.done("verdicts")]
            if ready:
                start = time.perf_counter()
                verification.verify_shard(ready[0], progress=bar)
                verify_seconds += time.perf_counter() - start
                verified += 1
                pause_point("verify", verified)
            return bool(ready)

        def sample() -> tuple[dict, str]:
            pending = plan.pending("samples")
            if pending:
                job = SampleJob(
                    model=sampler,
                    tasks=(sampling_task(cfg, plan, k),),
                    engine_args=dict(cfg.engine_args or {}),
                    seed=cfg.seed,
                    backend=cfg.backend,
                    progress=cfg.progress,
                )
                work = verify_next if cfg.overlap_verify else (lambda: False)
                if cfg.executor == "ray":
                    from sdp.launch.ray_executor import sample_on_ray

                    sample_on_ray(job, ray_options(cfg), work=work)
                else:
                    run_stage_while("sdp.stages.sample", job.to_dict(), rdir / "sample.job.json", work,
                                    env=cfg.vllm_env)
            n = plan.count_records("samples")
            earlier = plan.count - len(pending)
            how = f"{earlier} of {plan.count} shards drawn earlier" if earlier else sampler
            info = {
                "problems": plan.problems,
                "samples": n,
                "shards": plan.count,
                "shards_drawn_earlier": earlier,
                "sampler_model": sampler,
                "prefetched": not pending,
            }
            return info, f"{plan.problems} problems -> {n} samples in {plan.count} shards ({how})"

        def verify() -> tuple[dict, str]:
            if cfg.executor == "ray":
                from sdp.launch.ray_executor import verify_on_ray

                code = any(p.get("domain") == "code" for shard in plan.shards for p in shard.load_problems().values())
                verify_on_ray(plan.pending("verdicts"), verifier=cfg.verifier, timeout=cfg.verify_timeout,
                              options=ray_options(cfg), check_sandbox=code)
            while verify_next():
                pass
            counts = summarize(plan.iter_records("verdicts"))
            info = {**counts, "verify_seconds": round(verify_seconds, 3)}
            return info, (
                f"{counts['total']} samples: {counts['ok']} ok, {counts['wrong']} wrong, "
                f"{counts['unverifiable']} unverifiable"
            )

        try:
            sample_info = run_stage_once(run, k, "sample", sample)
            verify_info = run_stage_once(run, k, "verify", verify)
        finally:
            bar.close()
    return sample_info, verify_info


def select_stage(run: RunDir, cfg: RoundConfig, k: int, plan: ShardPlan) -> dict:
    """Stream the verdicts through the selection rules into `sft.jsonl` (rendered prompt / completion pairs)."""

    def fn() -> tuple[dict, str]:
        from transformers import AutoTokenizer

        from sdp.sources.templates import render_prompt

        template = cfg.template
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        rdir = run.round_dir(k)
        selector = Selector(cfg.max_per_problem, grouped=True)
        with JsonlWriter(rdir / "sft.jsonl") as out:
            for shard in plan.shards:
                problems = shard.load_problems()
                for record in iter_jsonl(shard.verdicts):
                    if selector.add(record):
                        out.write(sft_pair(record, render_prompt(tokenizer, problems[record["id"]], template)))
        atomic_write_json(rdir / "solve_rates.json", selector.solve_rates)
        c = selector.summary()
        info = {**c, "train_pass_rate": round(selector.train_pass_rate, 6)}
        return (
            info,
            f"kept {c['kept']} of {c['ok']} verified ({c['duplicates']} duplicates, {c['capped']} over cap, "
            f"{c['unverifiable']} unverifiable dropped); {c['problems_solved']}/{c['problems']} problems solved",
        )

    return run_stage_once(run, k, "select", fn)


def train_stage(run: RunDir, cfg: RoundConfig, k: int) -> dict:
    """SFT on the round's kept traces, in its own process; the initial model when nothing was kept."""
    rdir = run.round_dir(k)

    def fn() -> tuple[dict, str]:
        init = cfg.model if cfg.init_from == "base" else policy(run, cfg, k - 1)
        if count_lines(rdir / "sft.jsonl") == 0:
            logger.warning(
                "round %d: no verified traces to train on; the checkpoint is the initial model %s", k, init
            )
            return {"checkpoint": _rel(run, init), "trained": False, "examples": 0}, "nothing to train on"
        kd = dict(cfg.kd) if cfg.kd else None
        if kd:
            # Quantization-aware distillation: no teacher named means the full-precision model itself.
            kd["teacher_model"] = kd.get("teacher_model") or cfg.teacher_model or (init if cfg.quantize else None)
        from sdp.stages.train import TrainJob, run_train

        job = TrainJob(
            init_model=init,
            sft_path=str(rdir / "sft.jsonl"),
            output=str(rdir / "checkpoint"),
            work_dir=str(rdir / "trainer"),
            stats=str(rdir / "train_stats.json"),
            sft_args=dict(cfg.sft or {}),
            seed=cfg.seed + k,
            lora=cfg.lora,
            kd=kd,
            progress=cfg.progress,
            launcher=cfg.launcher,
            num_processes=cfg.num_processes,
            accelerate_config=cfg.accelerate_config,
            dtype=cfg.dtype,
            teacher_dtype=cfg.teacher_dtype,
            template=cfg.template_fields(),
            quantize=cfg.quantize,
        )
        stats = run_train(job, rdir / "train.job.json")
        shutil.rmtree(rdir / "trainer", ignore_errors=True)
        return (
            {"checkpoint": _rel(run, rdir / "checkpoint"), "trained": True, "init_model": init, **stats},
            f"{stats['examples']} examples, {stats['steps']} steps, loss {stats['train_loss']:.4f} (from {init})",
        )

    return run_stage_once(run, k, "train", fn)


def round_metrics(run: RunDir, cfg: RoundConfig, k: int, infos: dict[str, dict]) -> dict:
    """metrics.json of round k from its stages' manifest entries."""
    return {
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
        **contamination_counts(run),
    }


def contamination_counts(run: RunDir) -> dict[str, Any]:
    """{contaminated, dropped} of the start-up n-gram check, when one ran (decontamination.json)."""
    path = run.root / "decontamination.json"
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    return {"decontamination": {"contaminated": report["contaminated"], "dropped": report["dropped"]}}


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
    train_all, contamination = check_contamination(cfg, train_all, eval_set)
    run = RunDir(Path(cfg.output_dir) / cfg.name)
    check_run_config(run, cfg)
    if contamination:
        atomic_write_json(run.root / "decontamination.json", contamination)
    rounds = plan_rounds(run, cfg)
    if rounds or not run.done(0, "metrics"):
        preflight(run, cfg)
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
    table = write_summary(run.root)
    print(table)


if __name__ == "__main__":
    main()
