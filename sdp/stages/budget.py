"""Sample a shard set in verified waves on one engine: the adaptive budget and STaR rationalization.

Called by the sampler process (`sdp.stages.sample.run_job`) for a `SampleTask` with a `budget`
(`BudgetSpec`): the waves run on the engine the process already has, and each wave is verified
there, shard by shard while later shards of the wave are still drawn (one verifier thread beside
the engine loop), because the next wave's active problems depend on the verdicts
(`sdp.stages.budget_plan.plan_wave`). After the waves, the hint pass (`plan_rationalize`) samples
the unsolved problems with a gold answer with the hint prompt (`sdp.stages.rationalize`).

Files, under the shard set's directory:

    waves/wave-000/plan.json                 the wave's draws {id: [first sample index, count]}
    waves/wave-000/samples/shard-00000.jsonl one shard's samples of that wave (+ `wave`)
    waves/wave-000/verdicts/shard-00000.jsonl
    waves/rationalize/...                    the hint pass, the same layout (+ `rationalized: true`)
    verdicts/shard-00000.jsonl               every wave's verdicts of the shard, by problem then sample_index
    budget.json                              the summary (waves, sampled tokens, samples per problem, ...)
    samples/shard-00000.jsonl                the same records without verdicts (written last)

so the round's select stage streams `verdicts/` exactly as after fixed sampling. Determinism and
resume: sample j of a problem is seeded `problem_seed(seed, tag, id) + j` whichever wave draws it
(a deviation from a per-wave seed, for a reason: adaptive and fixed sampling then draw the same
candidates, common random numbers for comparing them), and a wave's plan is a pure function of the
verdicts before it. A restarted sampler replays every wave shard whose verdicts are on disk,
verifies one whose samples are (without redrawing it) and draws only the rest, so its files are
byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sdp.jsonl import JsonlWriter, atomic_write_jsonl, iter_jsonl, read_jsonl
from sdp.launch.process import pause_point
from sdp.rundir import atomic_write_json
from sdp.shards import Shard, ShardPlan
from sdp.stages.budget_plan import BudgetSpec, Draws, ProblemState, observe, plan_rationalize, plan_wave, spread
from sdp.stages.rationalize import flag_leak, has_gold, hint_problem
from sdp.stages.sample import HFSampler, SampleTask, stream_vllm
from sdp.stages.select import completion_digest
from sdp.stages.verify import Verification

__all__ = ["BudgetSpec", "SUMMARY", "budget_done", "rationalize_dir", "run_budget", "wave_dir"]

logger = logging.getLogger(__name__)

SUMMARY = "budget.json"


def wave_dir(root: str | Path, wave: int) -> Path:
    return Path(root) / "waves" / f"wave-{wave:03d}"


def rationalize_dir(root: str | Path) -> Path:
    return Path(root) / "waves" / "rationalize"


def budget_done(plan: ShardPlan) -> bool:
    """Whether the shard set was sampled in full by `run_budget` (its summary and every samples file exist)."""
    return (Path(plan.root) / SUMMARY).exists() and plan.complete("samples")


class _Waves:
    """One `run_budget` call: the problems, their states, the engine and the verifier."""

    def __init__(self, engine: Any, plan: ShardPlan, task: SampleTask, spec: BudgetSpec, seed: int,
                 verification: Verification, window: int, progress: bool) -> None:
        self.engine, self.plan, self.task, self.spec, self.seed = engine, plan, task, spec, seed
        self.verification, self.window, self.progress = verification, window, progress
        self.problems = [shard.load_problems() for shard in plan.shards]
        self.states: dict[str, ProblemState] = {}
        for idx, problems in enumerate(self.problems):
            for pid, problem in problems.items():
                self.states[pid] = ProblemState(len(self.states), idx, has_gold(problem))
        self.files_verified = 0
        self._hf: dict[str, HFSampler] = {}

    def draw(self, draws: Mapping[int, Draws], seed_tag: str, hint: bool) -> Iterator[tuple[int, list[dict]]]:
        """(shard index, records) of the draws of each shard, as each shard finishes."""
        template = self.spec.rationalize_template

        def prompt_of(problem: dict) -> dict:
            return hint_problem(problem, template) if hint else problem

        if isinstance(self.engine, str):  # the hf backend: a model path
            if seed_tag not in self._hf:
                self._hf[seed_tag] = HFSampler(self.engine, self.task.sampling, self.seed, seed_tag,
                                               self.task.prompt_template)
            sampler = self._hf[seed_tag]
            for idx in sorted(draws):
                problems = self.problems[idx]
                yield idx, [r for pid, d in draws[idx].items() for r in sampler.sample(prompt_of(problems[pid]), d)]
            return
        flat = {pid: d for shard_draws in draws.values() for pid, d in shard_draws.items()}
        batches = ((idx, [prompt_of(self.problems[idx][pid]) for pid in draws[idx]]) for idx in sorted(draws))
        yield from stream_vllm(self.engine, batches, self.task.sampling, self.seed, seed_tag=seed_tag,
                               window=self.window, progress=self.progress, template=self.task.prompt_template,
                               draws=flat)

    def verify(self, shard: Shard, idx: int, hint: bool) -> None:
        """Write a wave shard's verdicts, each sample joined with its original problem (never the hint)."""
        problems = self.problems[idx]
        samples = read_jsonl(shard.samples)
        joined = ({**problems[r["id"]], **r} for r in samples)
        with JsonlWriter(shard.verdicts) as out:
            for record, verdict in zip(samples, self.verification.verdicts(joined), strict=True):
                result = {**record, "verdict": verdict}
                if hint:
                    result = flag_leak(result, problems[record["id"]], self.spec.rationalize_template)
                out.write(result)
        self.files_verified += 1
        pause_point("sample", self.files_verified)

    def phase(self, wdir: Path, draws: Draws, seed_tag: str, wave: int, hint: bool,
              on_record: Callable[[dict], None]) -> None:
        """Draw, verify and replay one wave (or the hint pass); shard files already on disk are reused."""
        saved = wdir / "plan.json"
        listed = {pid: list(d) for pid, d in draws.items()}
        if saved.exists():
            if json.loads(saved.read_text())["draws"] != listed:
                raise RuntimeError(f"{saved}: planned differently before (the settings or problems changed)")
        else:
            atomic_write_json(saved, {"wave": wave, "rationalize": hint, "draws": listed})
        by_shard: dict[int, Draws] = {}
        for pid, d in draws.items():
            by_shard.setdefault(self.states[pid].shard, {})[pid] = d
        extra = {"wave": wave, **({"rationalized": True} if hint else {})}
        futures: list[Future] = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            todo = {}
            for idx, shard_draws in sorted(by_shard.items()):
                shard = Shard(wdir, idx)
                if shard.done("verdicts"):
                    continue
                if shard.done("samples"):
                    futures.append(pool.submit(self.verify, shard, idx, hint))
                else:
                    todo[idx] = shard_draws
            for idx, records in self.draw(todo, seed_tag, hint):
                atomic_write_jsonl(Shard(wdir, idx).samples, ({**r, **extra} for r in records))
                futures.append(pool.submit(self.verify, Shard(wdir, idx), idx, hint))
            for future in futures:
                future.result()
        for idx in sorted(by_shard):
            for record in iter_jsonl(Shard(wdir, idx).verdicts):
                on_record(record)

    def merge(self, dirs: list[Path]) -> None:
        """Each shard's verdicts of every wave, in problem order then sample order (what selection streams)."""
        for idx, shard in enumerate(self.plan.shards):
            records = [r for d in dirs if Shard(d, idx).done("verdicts") for r in iter_jsonl(Shard(d, idx).verdicts)]
            order = {pid: i for i, pid in enumerate(self.problems[idx])}
            records.sort(key=lambda r: (order[r["id"]], r["sample_index"]))
            atomic_write_jsonl(shard.verdicts, records)


def run_budget(engine: Any, plan: ShardPlan, task: SampleTask, spec: BudgetSpec, seed: int, *, window: int = 2,
               progress: bool = True) -> dict[str, Any]:
    """Sample `plan` in verified waves (then the hint pass); write the shard files and `budget.json`; return it."""
    with Verification.for_config(spec) as verification:
        run = _Waves(engine, plan, task, spec, seed, verification, window, progress)
        states = run.states
        used_samples = used_tokens = 0
        per_wave: list[dict[str, Any]] = []
        wave = 0

        def observe_wave(record: dict) -> None:
            ok = record["verdict"].get("ok") is True
            observe(states[record["id"]], record, completion_digest(record["completion"]) if ok else None)

        while True:
            draws = plan_wave(states, spec, wave, used_samples, used_tokens)
            if not draws:
                break
            run.phase(wave_dir(plan.root, wave), draws, task.seed_tag, wave, False, observe_wave)
            wave_samples = sum(count for _, count in draws.values())
            wave_tokens = sum(s.tokens for s in states.values()) - used_tokens
            used_samples, used_tokens = used_samples + wave_samples, used_tokens + wave_tokens
            solved = sum(1 for s in states.values() if s.ok)
            per_wave.append({"wave": wave, "problems": len(draws), "samples": wave_samples, "tokens": wave_tokens,
                             "problems_solved": solved})
            logger.info("%s wave %d: %d problems, %d samples, %d tokens; %d/%d problems solved", task.seed_tag, wave,
                        len(draws), wave_samples, wave_tokens, solved, len(states))
            wave += 1
        summary = _summary(spec, states, per_wave, used_samples, used_tokens)
        dirs = [wave_dir(plan.root, w) for w in range(wave)]
        rdraws = plan_rationalize(states, spec, used_samples, used_tokens)
        if rdraws:
            hinted = {"problems": len(rdraws), "samples": 0, "tokens": 0, "ok": 0, "quotes_hint": 0}
            solved_by_hint: set[str] = set()

            def observe_hint(record: dict) -> None:
                hinted["samples"] += 1
                hinted["tokens"] += int(record.get("completion_tokens") or 0)
                verdict = record["verdict"]
                hinted["quotes_hint"] += verdict.get("reason") == "quotes the hint"
                if verdict.get("ok") is True:
                    hinted["ok"] += 1
                    solved_by_hint.add(record["id"])

            run.phase(rationalize_dir(plan.root), rdraws, f"{task.seed_tag}/rationalize", wave, True, observe_hint)
            summary["rationalize"] = {**hinted, "problems_solved": len(solved_by_hint)}
            summary["samples"] += hinted["samples"]
            summary["sampled_tokens"] += hinted["tokens"]
            dirs.append(rationalize_dir(plan.root))
        run.merge(dirs)
        atomic_write_json(Path(plan.root) / SUMMARY, summary)
        for shard in plan.shards:
            atomic_write_jsonl(shard.samples, ({k: v for k, v in r.items() if k != "verdict"}
                                               for r in iter_jsonl(shard.verdicts)))
    return summary


def _summary(spec: BudgetSpec, states: Mapping[str, ProblemState], per_wave: list[dict], samples: int,
             tokens: int) -> dict[str, Any]:
    """budget.json before the hint pass: what the waves spent and where."""
    cap = spec.max_per_problem
    return {
        "mode": spec.mode,
        "waves": len(per_wave),
        "samples": samples,
        "sampled_tokens": tokens,
        "budget_samples": spec.budget_samples,
        "budget_tokens": spec.budget_tokens,
        "problems": len(states),
        "problems_solved": sum(1 for s in states.values() if s.ok),
        "samples_per_problem": spread([s.drawn for s in states.values()]),
        # Reached the cap of distinct verified traces with samples still allowed (max_n) to spare.
        "stopped_early": sum(1 for s in states.values() if s.distinct >= cap and s.drawn < spec.max_n),
        "exhausted": sum(1 for s in states.values() if s.ok == 0 and s.drawn >= spec.max_n),
        "unsampled": sum(1 for s in states.values() if s.drawn == 0),
        "per_wave": per_wave,
    }
