"""The stages of one round over its run directory, as plain functions (`sdp.round` calls them in order).

Each function runs its stage (in this process or as a stage module in a child) unless the run
directory's manifest already records it, and records what it did: sample and verify (shard by
shard, verification overlapping sampling), select, train, evaluate, and the round's metrics.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sdp.config import RoundConfig
from sdp.jsonl import JsonlWriter, count_lines, iter_jsonl
from sdp.launch.process import pause_point, run_stage_while
from sdp.round_budget import apply_pass_rate_filter, budget_metrics, budget_spec, budget_summary
from sdp.rundir import RunDir, atomic_write_json
from sdp.shards import ShardPlan, plan_shards
from sdp.sources.problems import subset
from sdp.stages.evaluate import evaluate_model, format_scores
from sdp.stages.luck import format_luck, measure_luck
from sdp.stages.sample import SampleJob, SampleTask
from sdp.stages.select import Selector, sft_pair
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


def train_shards(run: RunDir, cfg: RoundConfig, k: int, train_all: list[dict]) -> ShardPlan:
    """Round k's training problems (a fresh seeded subset, minus the pass-rate filter's skips), in shards."""
    problems = subset(train_all, cfg.max_train_problems, seed=cfg.seed * 1000 + k)
    problems = apply_pass_rate_filter(cfg, k, problems, run.round_dir(k), run.round_dir(k - 1))
    return plan_shards(problems, run.round_dir(k), cfg.shard_size)


def sampling_task(cfg: RoundConfig, plan: ShardPlan, k: int) -> SampleTask:
    return SampleTask(str(plan.root), dict(cfg.sampling or {}), f"train-{k}", cfg.template_fields(),
                      budget_spec(cfg, plan.problems))


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


def ray_options(cfg: RoundConfig) -> Any:
    from sdp.launch.ray_executor import RayOptions

    return RayOptions(address=cfg.ray_address, replicas=cfg.replicas, env=dict(cfg.vllm_env or {}))


def sample_and_verify(run: RunDir, cfg: RoundConfig, k: int, plan: ShardPlan, sampler: str) -> tuple[dict, dict]:
    """The sample and verify stages of round k: finished shards are verified while later ones are drawn.

    Shards sampled earlier (by a killed run, or by round k-1's evaluation on the same model) are
    kept; only the others are drawn, and the sampler is not started when there are none. With an
    adaptive budget or rationalization the sampler verifies its own waves (`sdp.stages.budget`), so
    the verify stage finds every verdicts file written and only counts them.
    """
    rdir = run.round_dir(k)
    verify_seconds = 0.0
    bar = tqdm(total=plan.problems * int((cfg.sampling or {}).get("n", 1)), desc="verify", unit="rec",
               disable=not cfg.progress)  # fmt: skip
    with Verification.for_config(cfg) as verification:

        def verify_next() -> bool:
            nonlocal verify_seconds
            ready = [s for s in plan.shards if s.done("samples") and not s.done("verdicts")]
            if ready:
                start = time.perf_counter()
                verification.verify_shard(ready[0], progress=bar)
                verify_seconds += time.perf_counter() - start
                # The round's verified shards, whichever stage verified them (see evaluate_model).
                pause_point("verify", plan.count - len(plan.pending("verdicts")))
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
                work = verify_next if cfg.overlap_verify and not cfg.sampler_verifies else (lambda: False)
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
            budget = budget_summary(plan.root) if cfg.sampler_verifies else None
            if budget is not None:
                info["budget"] = budget
                how += (f"; {budget['waves']} waves, {budget['sampled_tokens']} tokens, "
                        f"{budget['stopped_early']} problems stopped early")
                if "rationalize" in budget:
                    how += f", {budget['rationalize']['ok']} verified with a hint"
            return info, f"{plan.problems} problems -> {n} samples in {plan.count} shards ({how})"

        def verify() -> tuple[dict, str]:
            # Shards verified before this stage: under the previous round's evaluation (whose sampler drew
            # them), or by a killed run.
            earlier = plan.count - len(plan.pending("verdicts"))
            if cfg.executor == "ray":
                from sdp.launch.ray_executor import verify_on_ray

                code = any(p.get("domain") == "code" for shard in plan.shards for p in shard.load_problems().values())
                verify_on_ray(plan.pending("verdicts"), verifier=cfg.verifier, timeout=cfg.verify_timeout,
                              keep_truncated=cfg.keep_truncated, math_verify=cfg.math_verify,
                              options=ray_options(cfg), check_sandbox=code)  # fmt: skip
            while verify_next():
                pass
            counts = summarize(plan.iter_records("verdicts"))
            info = {**counts, "verify_seconds": round(verify_seconds, 3), "shards_verified_earlier": earlier}
            if cfg.sampler_verifies:
                info["verified_by"] = "sampler"
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
        selector = round_selector(cfg, plan)
        with JsonlWriter(rdir / "sft.jsonl") as out:
            for shard in plan.shards:
                problems = shard.load_problems()
                for record in iter_jsonl(shard.verdicts):
                    if selector.add(record):
                        out.write(sft_pair(record, render_prompt(tokenizer, problems[record["id"]], template)))
        atomic_write_json(rdir / "solve_rates.json", selector.solve_rates)
        c = selector.summary()
        info = {**c, "train_pass_rate": round(selector.train_pass_rate, 6)}
        hinted = (f"; + {c['rationalized_kept']} rationalized ({c['problems_rationalized']} problems, "
                  f"{c['rationalized_over_share']} over the share cap)") if "rationalized_kept" in c else ""
        return (
            info,
            f"kept {c['kept']} of {c['ok']} verified ({c['duplicates']} duplicates, {c['capped']} over cap, "
            f"{c['unverifiable']} unverifiable dropped); {c['problems_solved']}/{c['problems']} problems solved"
            + hinted,
        )

    info = run_stage_once(run, k, "select", fn)
    luck_stage(run, cfg, k, plan)
    return info


def round_selector(cfg: RoundConfig, plan: ShardPlan) -> Selector:
    """A fresh `Selector` with the round's rules: what the select stage keeps."""
    return Selector(cfg.max_per_problem, grouped=True, rationalized_limit=rationalized_cap(cfg, plan))


def luck_inputs(cfg: RoundConfig, k: int, plan: ShardPlan) -> tuple[Verification, Selector, int]:
    """The verification (the round's pool settings and rules, records naming their verifier), selector and
    derangement seed of round k's luck pass."""
    verification = Verification(verifier=None, workers=cfg.verify_workers, timeout=cfg.verify_timeout,
                                keep_truncated=cfg.keep_truncated, math_verify=cfg.math_verify)  # fmt: skip
    return verification, round_selector(cfg, plan), cfg.seed * 1000 + k


def luck_stage(run: RunDir, cfg: RoundConfig, k: int, plan: ShardPlan) -> dict:
    """The luck pass over round k's verdicts (`sdp.stages.luck`): one extra verification pass, timed.

    On by default (`luck_check`): it costs one verification pass of at most `MAX_CHECKED` answer-compared
    samples (code is skipped). Off: no pass, no `luck` stage record, and metrics.json has no `luck` key.
    """
    if not cfg.luck_check:
        return {}

    def fn() -> tuple[dict, str]:
        verification, selector, seed = luck_inputs(cfg, k, plan)
        with verification:
            luck = measure_luck(plan, verification, selector, verifier=cfg.verifier, seed=seed)
        return {"luck": luck}, format_luck(luck)

    return run_stage_once(run, k, "luck", fn)


def rationalized_cap(cfg: RoundConfig, plan: ShardPlan) -> int | None:
    """How many rationalized traces `max_rationalized_share` allows, from a first pass counting the others."""
    from sdp.stages.rationalize import rationalized_limit

    share = cfg.max_rationalized_share
    if not cfg.rationalize or share is None or share >= 1:
        return None
    plain = Selector(cfg.max_per_problem, grouped=True)
    for record in plan.iter_records("verdicts"):
        if not record.get("rationalized"):
            plain.add(record)
    return rationalized_limit(plain.counts["kept"], share)


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
    """metrics.json of round k from its stages' manifest entries (the luck pass's, when it ran)."""
    luck = run.info(k, "luck") if run.done(k, "luck") else None
    timings = {name: infos[name]["seconds"] for name in TRAIN_STAGES}
    if luck is not None:
        timings["luck"] = luck["seconds"]
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
        "timings": timings,
        "peak_rss_mb": max(info["peak_rss_mb"] for info in [*infos.values(), *([luck] if luck else [])]),
        **({"luck": luck["luck"]} if luck is not None else {}),
        **contamination_counts(run),
        **budget_metrics(run.round_dir(k), infos),
    }


def contamination_counts(run: RunDir) -> dict[str, Any]:
    """{contaminated, dropped} of the start-up n-gram check, when one ran (decontamination.json)."""
    path = run.root / "decontamination.json"
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    return {"decontamination": {"contaminated": report["contaminated"], "dropped": report["dropped"]}}
