"""Sample N candidates per problem with vLLM's offline engine (or transformers, as a fallback).

Run by the round in its own process (`python -m sdp.stages.sample JOB.json`) so that vLLM's memory
is released before training. The job names the model, the problems file, the output file,
vLLM `SamplingParams` and `LLM` keyword arguments (passed through untouched) and a seed.

Determinism: every problem gets its own seed derived from (seed, problem id), so a problem's
samples do not depend on batch composition or order, and a resumed run re-draws exactly the
same candidates. vLLM gives the i-th of n samples the seed `seed + i`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sdp.rundir import atomic_write_jsonl, read_jsonl
from sdp.launch.process import die_with_parent, load_job

logger = logging.getLogger(__name__)

PLAIN_PROMPT_TEMPLATE = "{prompt}\n"

# SamplingParams keys the `hf` backend understands; others are reported, not silently used.
_HF_KEYS = {"n", "temperature", "top_p", "top_k", "max_tokens", "stop", "seed"}


def is_vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def render_prompt(tokenizer: Any, prompt: str) -> str:
    """The text the model sees: its chat template with one user turn, else `PLAIN_PROMPT_TEMPLATE`."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    return PLAIN_PROMPT_TEMPLATE.format(prompt=prompt)


def encode_prompt(tokenizer: Any, rendered: str) -> list[int]:
    """Token ids of a rendered prompt; chat templates carry their own BOS, plain prompts get the tokenizer's."""
    add_special = not getattr(tokenizer, "chat_template", None)
    return list(tokenizer(rendered, add_special_tokens=add_special)["input_ids"])


def problem_seed(seed: int, *parts: str) -> int:
    """A 31-bit seed from the run seed and a problem's identity (stable across processes)."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    # Leave room for vLLM's `seed + i` over the n samples of one request.
    return int.from_bytes(digest[:4], "little") % (2**31 - 2**16)


def _records(problem: Mapping, outputs: Sequence[tuple[str, int, str | None]]) -> list[dict]:
    return [
        {**problem, "completion": text, "sample_index": i, "completion_tokens": ntok, "finish_reason": finish}
        for i, (text, ntok, finish) in enumerate(outputs)
    ]


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
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    params = dict(sampling)
    base_seed = int(params.pop("seed", seed))
    prompts = [
        TokensPrompt(prompt_token_ids=encode_prompt(tokenizer, render_prompt(tokenizer, p["prompt"])))
        for p in problems
    ]
    per_prompt = [SamplingParams(**params, seed=problem_seed(base_seed, seed_tag, p["id"])) for p in problems]
    outputs = llm.generate(prompts, per_prompt, use_tqdm=progress)
    records: list[dict] = []
    for problem, out in zip(problems, outputs, strict=True):
        cands = sorted(out.outputs, key=lambda o: o.index)
        records.extend(_records(problem, [(o.text, len(o.token_ids), o.finish_reason) for o in cands]))
    return records


def build_llm(model: str, engine_args: Mapping[str, Any], seed: int) -> Any:
    from vllm import LLM

    args = {"seed": seed, **engine_args}
    return LLM(model=model, **args)


def sample_hf(
    model_path: str,
    problems: Sequence[Mapping],
    sampling: Mapping[str, Any],
    seed: int,
    *,
    seed_tag: str = "",
    progress: bool = True,
) -> list[dict]:
    """The `hf` backend: transformers `generate`, one problem (n sequences) at a time."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ignored = sorted(set(sampling) - _HF_KEYS)
    if ignored:
        logger.warning("hf backend ignores sampling keys %s", ignored)
    params = dict(sampling)
    base_seed = int(params.pop("seed", seed))
    n = int(params.get("n", 1))
    temperature = float(params.get("temperature", 1.0))
    stops = params.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": int(params.get("max_tokens", 16)),
        "num_return_sequences": n,
        "pad_token_id": pad_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if temperature > 0:
        gen_kwargs.update(do_sample=True, temperature=temperature, top_p=float(params.get("top_p", 1.0)))
        if params.get("top_k") not in (None, -1, 0):
            gen_kwargs["top_k"] = int(params["top_k"])
    else:
        gen_kwargs["do_sample"] = False
    records: list[dict] = []
    for problem in tqdm(problems, desc="sampling (hf)", disable=not progress):
        ids = encode_prompt(tokenizer, render_prompt(tokenizer, problem["prompt"]))
        torch.manual_seed(problem_seed(base_seed, seed_tag, problem["id"]))
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), **gen_kwargs
            )
        cands = []
        for row in out[:, len(ids) :].tolist():
            finish = "length"
            if tokenizer.eos_token_id in row:
                row, finish = row[: row.index(tokenizer.eos_token_id)], "stop"
            text = tokenizer.decode(row, skip_special_tokens=True)
            for stop in stops:
                if stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            cands.append((text, len(row), finish))
        records.extend(_records(problem, cands))
    return records


def job_tasks(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A job's sampling tasks: its own (problems, output, sampling, seed_tag) plus any in `also`.

    Several tasks share one engine start; the round uses this to draw the next round's
    training candidates in the same process as the held-out evaluation of the same model.
    """
    keys = ("problems", "output", "sampling", "seed_tag")
    return [
        {k: job.get(k, "") for k in keys},
        *[{k: t.get(k, "") for k in keys} for t in job.get("also", [])],
    ]


def run_job(job: Mapping[str, Any]) -> int:
    """Sample every task of the job and write its output file; return the number of records."""
    backend = job.get("backend", "vllm")
    if backend == "vllm" and not is_vllm_available():
        logger.warning("vLLM is not installed: sampling with the slow 'hf' backend instead")
        backend = "hf"
    if backend not in ("vllm", "hf"):
        raise ValueError(f"unknown sampling backend {backend!r} (expected 'vllm' or 'hf')")
    seed, progress = int(job["seed"]), job.get("progress", True)
    llm = build_llm(job["model"], job.get("engine_args") or {}, seed) if backend == "vllm" else None
    total = 0
    for task in job_tasks(job):
        start = time.perf_counter()
        problems = read_jsonl(task["problems"])
        if llm is not None:
            records = sample_vllm(
                llm, problems, task["sampling"], seed, seed_tag=task["seed_tag"], progress=progress
            )
        else:
            records = sample_hf(
                job["model"], problems, task["sampling"], seed, seed_tag=task["seed_tag"], progress=progress
            )
        count = atomic_write_jsonl(task["output"], records)
        total += count
        logger.info(
            "sampled %d completions for %d problems in %.1f s (%s) -> %s",
            count,
            len(problems),
            time.perf_counter() - start,
            backend,
            task["output"],
        )
    return total


def main(argv: list[str] | None = None) -> None:
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    job = load_job(argv)
    for task in job_tasks(job):
        Path(task["output"]).parent.mkdir(parents=True, exist_ok=True)
    run_job(job)
    # The output is fsynced and renamed; vLLM's interpreter-exit shutdown would add seconds.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
