"""Fail early: check every pass-through section and every model of a round config at start-up, loading no model.

`python -m sdp.round` runs this in a child process (`python -m sdp.preflight JOB.json`, the job
being the config as a dict) before any sampling, so the round process stays free of vLLM and
torch. Each pass-through section is first type-checked against the annotations of the class that
will consume it (`sdp.fieldcheck`: `sft.max_steps: expected int, got 'five'`), then handed to that
library: `engine_args` -> `vllm.EngineArgs(model=..., **engine_kwargs(engine_args))` (the engine is
not created), `sampling` / `eval_sampling` -> `vllm.SamplingParams(**...)`, `sft` ->
`trl.SFTConfig(output_dir=tmp, **sft)`, `lora` -> `peft.LoraConfig(**lora)`, `kd` -> `KDConfig`,
`quantize` -> `QuantizeConfig`, `math_verify` -> `verifiers.MathVerifyConfig`. The models are checked by
`sdp.modelcheck` (a directory with weights and a tokenizer, or a hub id that resolves; contexts that fit).
Every failure is one line naming the field.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from sdp.fieldcheck import FieldTypeError, check_section
from sdp.modelcheck import ModelCheckError, check_models


class ConfigCheckError(ValueError):
    """A config section or model that is rejected at start-up (the message names the field)."""


def _check(section: str, build: Callable[[], Any]) -> None:
    try:
        build()
    except (FieldTypeError, ModelCheckError, ConfigCheckError) as exc:
        raise ConfigCheckError(str(exc)) from None
    except Exception as exc:  # each library raises its own types (TypeError, ValueError, pydantic errors)
        text = " ".join(str(exc).split())  # pydantic's errors span lines; keep one
        raise ConfigCheckError(f"{section}: {type(exc).__name__}: {text}") from exc


def _sft(sft: Mapping[str, Any]) -> None:
    from trl import SFTConfig

    check_section("sft", SFTConfig, sft, skip=("completion_only_loss", "output_dir"))
    args = dict(sft)
    args.pop("completion_only_loss", None)  # the train stage consumes it first
    args.pop("output_dir", None)  # sdp sets it
    args.setdefault("use_cpu", True)  # no GPU needed to check the arguments
    with tempfile.TemporaryDirectory() as tmp:
        SFTConfig(output_dir=tmp, report_to=args.pop("report_to", "none"), **args)


def _lora(lora: Mapping[str, Any]) -> None:
    from peft import LoraConfig

    check_section("lora", LoraConfig, lora)
    LoraConfig(**lora)


def _engine(model: str, engine_args: Mapping[str, Any]) -> None:
    from vllm import EngineArgs

    from sdp.stages.engine import engine_kwargs, on_cpu_platform

    check_section("engine_args", EngineArgs, engine_args)
    EngineArgs(model=model, **engine_kwargs(engine_args, on_cpu_platform()))


def _sampling(name: str, params: Mapping[str, Any]) -> None:
    from vllm import SamplingParams

    values = dict(params)
    values.pop("seed", None)  # the base of per-problem seeds, replaced per request
    check_section(name, SamplingParams, values)
    SamplingParams(**values)


def check_config(cfg: Mapping[str, Any]) -> list[str]:
    """Check each section and model of the config dict; return what was checked (raise ConfigCheckError)."""
    # The models first: EngineArgs resolves the model itself and would report a missing one as `engine_args`.
    _check("model", lambda: check_models(cfg))
    checked = ["models"]
    if cfg.get("math_verify") is not None:
        from sdp.config import check_math_verify

        _check("math_verify", lambda: check_math_verify(cfg["math_verify"]))
        checked.append("math_verify")
    if cfg.get("kd") is not None:
        from sdp.distill.config import KDConfig

        _check("kd", lambda: (check_section("kd", KDConfig, cfg["kd"]), KDConfig.from_dict(cfg["kd"])))
        checked.append("kd")
    if cfg.get("quantize") is not None:
        from sdp.distill.quantize import QuantizeConfig

        _check("quantize", lambda: (check_section("quantize", QuantizeConfig, cfg["quantize"]),
                                    QuantizeConfig.from_dict(cfg["quantize"])))
        checked.append("quantize")
    if cfg.get("sft") is not None:
        _check("sft", lambda: _sft(cfg["sft"]))
        checked.append("sft")
    if cfg.get("lora") is not None:
        _check("lora", lambda: _lora(cfg["lora"]))
        checked.append("lora")
    if cfg.get("backend", "vllm") == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            vllm = None
        if vllm is not None:
            _check("engine_args", lambda: _engine(cfg["model"], cfg.get("engine_args") or {}))
            checked.append("engine_args")
            for name in ("sampling", "eval_sampling"):
                _check(name, lambda name=name: _sampling(name, cfg.get(name) or {}))
                checked.append(name)
    return checked


def main(argv: list[str] | None = None) -> None:
    from sdp.launch.process import load_job, stage_child

    stage_child()
    try:
        check_config(load_job(argv))
    except ConfigCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
