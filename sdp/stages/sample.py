"""Sample N candidates per problem with vLLM's offline engine (or transformers, as a fallback), shard by shard.

Run by the round in its own process (`python -m sdp.stages.sample JOB.json`, the job a
`SampleJob`) so that vLLM's memory is released before training. One engine serves every task of
the job; each task is a shard set (`sdp.shards`), and each shard's samples file is written as soon
as all of its problems are finished, so a killed sampler redoes only the shards it had not
written. The engine is kept full across shard boundaries: `window` shards are queued at once,
and the next one is queued as soon as one finishes.

A sample record references its problem: `{id, domain, sample_index, completion,
completion_tokens, finish_reason}`; the problem's other fields stay in the shard's problems file.

Determinism: every problem gets its own seed derived from (seed, problem id), so a problem's
samples do not depend on batch composition or order, and a resumed run re-draws exactly the
same candidates. vLLM gives the i-th of n samples the seed `seed + i`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sdp.jsonl import atomic_write_jsonl, iter_jsonl, read_jsonl
from sdp.launch.process import load_job, pause_point, stage_child
from sdp.shards import Shard, ShardPlan
from sdp.sources.templates import DEFAULT_TEMPLATE, PLAIN_PROMPT_TEMPLATE, PromptTemplate, encode_prompt, render_prompt
from sdp.stages.engine import build_llm, is_vllm_available

K = TypeVar("K")

logger = logging.getLogger(__name__)

# SamplingParams keys the `hf` backend understands; others are reported, not silently used.
_HF_KEYS = {"n", "temperature", "top_p", "top_k", "max_tokens", "stop", "seed"}


def problem_seed(seed: int, *parts: str) -> int:
    """A 31-bit seed from the run seed and a problem's identity (stable across processes)."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    # Leave room for vLLM's `seed + i` over the n samples of one request.
    return int.from_bytes(digest[:4], "little") % (2**31 - 2**16)


def _records(problem: Mapping, outputs: Sequence[tuple[str, int, str | None]], first: int = 0) -> list[dict]:
    return [
        {
            "id": problem["id"],
            "domain": problem.get("domain"),
            "completion": text,
            "sample_index": first + i,
            "completion_tokens": ntok,
            "finish_reason": finish,
        }
        for i, (text, ntok, finish) in enumerate(outputs)
    ]


def _vllm_records(problem: Mapping, result: Any, first: int, token_ids: bool) -> list[dict]:
    """The records of one vLLM request (its candidates in index order); `token_ids` adds the exact ids."""
    cands = sorted(result.outputs, key=lambda o: o.index)
    records = _records(problem, [(o.text, len(o.token_ids), o.finish_reason) for o in cands], first)
    if token_ids:
        for record, out in zip(records, cands, strict=True):
            record["prompt_token_ids"] = list(result.prompt_token_ids)
            record["completion_token_ids"] = list(out.token_ids)
    return records


def stream_vllm(
    llm: Any,
    batches: Iterable[tuple[K, Sequence[Mapping]]],
    sampling: Mapping[str, Any],
    seed: int,
    *,
    seed_tag: str = "",
    window: int = 2,
    progress: bool = True,
    template: PromptTemplate = DEFAULT_TEMPLATE,
    draws: Mapping[str, tuple[int, int]] | None = None,
    token_ids: bool = False,
) -> Iterator[tuple[K, list[dict]]]:
    """Yield (key, records) for each batch of problems as soon as all its requests are finished.

    At most `window` batches are queued in the engine at once; the next is queued as soon as one
    finishes, so the engine stays busy across batch boundaries while memory stays bounded.
    `draws` (problem id -> (first, count), the adaptive budget's waves) asks for `count` samples
    numbered from `first`, seeded `problem seed + first`: since vLLM seeds the i-th of n samples
    `seed + i`, sample j of a problem is the same whichever wave draws it. `token_ids` adds the
    prompt's and each completion's token ids to the records (audits, the template tests).
    """
    from tqdm.auto import tqdm
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    params = dict(sampling)
    base_seed = int(params.pop("seed", seed))
    n = int(params.get("n", 1))
    owner: dict[str, tuple[K, int]] = {}
    open_: dict[K, tuple[Sequence[Mapping], list[Any]]] = {}
    left: dict[K, int] = {}
    feed = iter(batches)
    bar = tqdm(desc="sampling", unit="sample", disable=not progress)

    def enqueue() -> bool:
        item = next(feed, None)
        if item is None:
            return False
        key, problems = item
        prompts = [
            TokensPrompt(prompt_token_ids=encode_prompt(tokenizer, render_prompt(tokenizer, p, template), template))
            for p in problems
        ]
        per_prompt = [
            SamplingParams(**{**params, "n": draws[p["id"]][1]}, seed=problem_seed(base_seed, seed_tag, p["id"])
                           + draws[p["id"]][0])
            if draws is not None
            else SamplingParams(**params, seed=problem_seed(base_seed, seed_tag, p["id"]))
            for p in problems
        ]
        ids = llm.enqueue(prompts, per_prompt, use_tqdm=False)
        open_[key], left[key] = (problems, [None] * len(problems)), len(problems)
        # enqueue() returns the engine's ids ("<id>-<suffix>"); outputs carry the request's own "<id>".
        owner.update({str(rid).split("-")[0]: (key, i) for i, rid in enumerate(ids)})
        return True

    try:
        for _ in range(max(1, window)):
            if not enqueue():
                break
        while open_:
            if not llm.llm_engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM finished without the outputs of {len(owner)} requests")
            for out in llm.llm_engine.step():
                if not out.finished or str(out.request_id) not in owner:
                    continue
                key, i = owner.pop(str(out.request_id))
                problems, outputs = open_[key]
                outputs[i] = out
                bar.update(len(out.outputs) if draws is not None else n)
                left[key] -= 1
                if left[key]:
                    continue
                del open_[key], left[key]
                enqueue()
                records: list[dict] = []
                for problem, result in zip(problems, outputs, strict=True):
                    first = draws[problem["id"]][0] if draws is not None else 0
                    records.extend(_vllm_records(problem, result, first, token_ids))
                yield key, records
    finally:
        bar.close()


def sample_vllm(
    llm: Any,
    problems: Sequence[Mapping],
    sampling: Mapping[str, Any],
    seed: int,
    *,
    seed_tag: str = "",
    progress: bool = True,
) -> list[dict]:
    """Draw `sampling['n']` completions per problem with an existing `vllm.LLM`; records in problem order."""
    if not problems:
        return []
    return next(iter(stream_vllm(llm, [(0, problems)], sampling, seed, seed_tag=seed_tag, progress=progress)))[1]


class HFSampler:
    """The `hf` backend: transformers `generate`, one problem (n sequences) at a time."""

    def __init__(
        self,
        model_path: str,
        sampling: Mapping[str, Any],
        seed: int,
        seed_tag: str = "",
        template: PromptTemplate = DEFAULT_TEMPLATE,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        ignored = sorted(set(sampling) - _HF_KEYS)
        if ignored:
            logger.warning("hf backend ignores sampling keys %s", ignored)
        params = dict(sampling)
        self.base_seed, self.seed_tag, self.template = int(params.pop("seed", seed)), seed_tag, template
        stops = params.get("stop") or []
        self.stops = [stops] if isinstance(stops, str) else list(stops)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path)
        self.model.eval()
        tok = self.tokenizer
        temperature = float(params.get("temperature", 1.0))
        self.gen_kwargs: dict[str, Any] = {
            "max_new_tokens": int(params.get("max_tokens", 16)),
            "num_return_sequences": int(params.get("n", 1)),
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            "eos_token_id": tok.eos_token_id,
        }
        if temperature > 0:
            self.gen_kwargs.update(do_sample=True, temperature=temperature, top_p=float(params.get("top_p", 1.0)))
            if params.get("top_k") not in (None, -1, 0):
                self.gen_kwargs["top_k"] = int(params["top_k"])
        else:
            self.gen_kwargs["do_sample"] = False

    def sample(self, problem: Mapping[str, Any], draw: tuple[int, int] | None = None) -> list[dict]:
        """The problem's n samples, or with `draw` = (first, count) `count` samples numbered from `first`."""
        import torch

        tokenizer = self.tokenizer
        ids = encode_prompt(tokenizer, render_prompt(tokenizer, problem, self.template), self.template)
        first, kwargs = 0, self.gen_kwargs
        if draw is not None:
            first, kwargs = draw[0], {**self.gen_kwargs, "num_return_sequences": draw[1]}
        torch.manual_seed(problem_seed(self.base_seed, self.seed_tag, problem["id"]) + first)
        with torch.no_grad():
            out = self.model.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), **kwargs
            )
        cands = []
        for row in out[:, len(ids) :].tolist():
            finish = "length"
            if tokenizer.eos_token_id in row:
                row, finish = row[: row.index(tokenizer.eos_token_id)], "stop"
            text = tokenizer.decode(row, skip_special_tokens=True)
            for stop in self.stops:
                if stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            cands.append((text, len(row), finish))
        return _records(problem, cands, first)


def sample_hf(
    model_path: str,
    problems: Sequence[Mapping],
    sampling: Mapping[str, Any],
    seed: int,
    *,
    seed_tag: str = "",
    progress: bool = True,
) -> list[dict]:
    """The `hf` backend on a list of problems; records in problem order."""
    from tqdm.auto import tqdm

    sampler = HFSampler(model_path, sampling, seed, seed_tag)
    return [r for p in tqdm(problems, desc="sampling (hf)", disable=not progress) for r in sampler.sample(p)]


@dataclass(frozen=True)
class SampleTask:
    """One shard set to sample: every shard of `shards` (a directory, see `sdp.shards`) lacking samples."""

    shards: str = field(metadata={"help": "Directory of the shard set (holds shards.json)."})
    sampling: dict = field(default_factory=dict, metadata={"help": "vllm.SamplingParams keyword arguments."})
    seed_tag: str = field(default="", metadata={"help": "Part of every per-problem seed (e.g. 'train-2', 'eval')."})
    template: dict = field(default_factory=dict, metadata={"help": "PromptTemplate fields (empty: the default)."})
    budget: dict = field(default_factory=dict, metadata={"help": "sdp.stages.budget.BudgetSpec fields: sample in "
                         "verified waves (adaptive budget, rationalization); empty: n per problem, unverified."})

    @property
    def prompt_template(self) -> PromptTemplate:
        return PromptTemplate.from_config(**self.template) if self.template else DEFAULT_TEMPLATE


@dataclass(frozen=True)
class SampleJob:
    """The job of one `python -m sdp.stages.sample` process: one engine, one or more shard sets."""

    model: str = field(metadata={"help": "Model path or hub id."})
    tasks: tuple[SampleTask, ...] = field(metadata={"help": "Shard sets, sampled in this order."})
    engine_args: dict = field(default_factory=dict, metadata={"help": "vllm.LLM keyword arguments."})
    seed: int = field(default=0, metadata={"help": "Base seed (engine and per-problem seeds)."})
    backend: str = field(default="vllm", metadata={"help": "'vllm' or 'hf'."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})
    window: int = field(default=2, metadata={"help": "Shards queued in the engine at once."})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleJob:
        fields = dict(data)
        fields["tasks"] = tuple(SampleTask(**t) for t in fields.get("tasks", ()))
        return cls(**fields)


def sample_shards(
    engine: Any,
    shards: Sequence[Shard],
    sampling: Mapping[str, Any],
    seed: int,
    *,
    seed_tag: str = "",
    window: int = 2,
    progress: bool = True,
    template: PromptTemplate = DEFAULT_TEMPLATE,
) -> Iterator[Shard]:
    """Sample every problem of `shards` and write each shard's samples file; yield each shard when written.

    `engine` is a `vllm.LLM`, or a model path for the `hf` backend. Shards are yielded in the
    order they finish (each file's content does not depend on that order).
    """
    if isinstance(engine, str):
        sampler = HFSampler(engine, sampling, seed, seed_tag, template)
        for shard in shards:
            records = [r for p in iter_jsonl(shard.problems) for r in sampler.sample(p)]
            atomic_write_jsonl(shard.samples, records)
            yield shard
        return
    batches = ((shard, read_jsonl(shard.problems)) for shard in shards)
    for shard, records in stream_vllm(
        engine, batches, sampling, seed, seed_tag=seed_tag, window=window, progress=progress, template=template
    ):
        atomic_write_jsonl(shard.samples, records)
        yield shard


def run_job(job: SampleJob) -> int:
    """Sample every pending shard of every task of the job; return the number of shards written."""
    backend = job.backend
    if backend == "vllm" and not is_vllm_available():
        logger.warning("vLLM is not installed: sampling with the slow 'hf' backend instead")
        backend = "hf"
    if backend not in ("vllm", "hf"):
        raise ValueError(f"unknown sampling backend {backend!r} (expected 'vllm' or 'hf')")
    plans = [(task, ShardPlan.load(task.shards)) for task in job.tasks]
    for task, plan in plans:
        if plan is None:
            raise FileNotFoundError(f"{task.shards}: no shard plan (shards.json)")
    pending = [(task, plan.pending("samples")) for task, plan in plans if plan is not None]
    if not any(shards for _, shards in pending):
        return 0
    engine: Any = job.model
    if backend == "vllm":
        engine = build_llm(job.model, job.engine_args, job.seed)
    written = 0
    for task, shards in pending:
        start = time.perf_counter()
        if task.budget and shards:
            from sdp.stages.budget import BudgetSpec, run_budget

            plan = ShardPlan.load(task.shards)
            assert plan is not None
            run_budget(engine, plan, task, BudgetSpec.from_dict(task.budget), job.seed, window=job.window,
                       progress=job.progress)
            written += len(shards)
            continue
        for shard in sample_shards(
            engine, shards, task.sampling, job.seed, seed_tag=task.seed_tag, window=job.window, progress=job.progress,
            template=task.prompt_template,
        ):
            written += 1
            logger.info("sampled %s (%s) -> %s", shard.name, backend, shard.samples)
            pause_point("sample", written)
        if shards:
            logger.info("%d shards of %s in %.1f s", len(shards), task.shards, time.perf_counter() - start)
    return written


def main(argv: list[str] | None = None) -> None:
    stage_child()
    run_job(SampleJob.from_dict(load_job(argv)))
    # The outputs are fsynced and renamed; vLLM's interpreter-exit shutdown would add seconds.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
