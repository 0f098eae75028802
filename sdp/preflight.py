"""Fail early: build every pass-through object of a round config at start-up, without loading a model.

`python -m sdp.round` runs this in a child process (`python -m sdp.preflight JOB.json`, the job
being the config as a dict) before any sampling, so the round process stays free of vLLM and
torch. Each pass-through section is handed to the library that will consume it hours later:
`engine_args` -> `vllm.EngineArgs(model=..., **engine_args)` (the engine is not created),
`sampling` / `eval_sampling` -> `vllm.SamplingParams(**...)`, `sft` -> `trl.SFTConfig(output_dir=tmp,
**sft)`, `lora` -> `peft.LoraConfig(**lora)`, `kd` -> `sdp.distill.config.KDConfig.from_dict`. A
section the library rejects is reported with the config field named.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any


class ConfigCheckError(ValueError):
    """A pass-through config section that its library rejects (the message names the field)."""


def _check(field_name: str, build: Callable[[], Any]) -> None:
    try:
        build()
    except Exception as exc:  # each library raises its own types (TypeError, ValueError, pydantic errors)
        raise ConfigCheckError(f"config field {field_name!r}: {type(exc).__name__}: {exc}") from exc


def _sft(sft: Mapping[str, Any]) -> None:
    from trl import SFTConfig

    args = dict(sft)
    args.pop("completion_only_loss", None)  # the train stage consumes it first
    args.setdefault("use_cpu", True)  # no GPU needed to check the arguments
    with tempfile.TemporaryDirectory() as tmp:
        SFTConfig(output_dir=tmp, report_to=args.pop("report_to", "none"), **args)


def check_config(cfg: Mapping[str, Any]) -> list[str]:
    """Build each section's library object from the config dict; return the sections checked."""
    checked = []
    if cfg.get("kd") is not None:
        from sdp.distill.config import KDConfig

        _check("kd", lambda: KDConfig.from_dict(cfg["kd"]))
        checked.append("kd")
    if cfg.get("sft") is not None:
        _check("sft", lambda: _sft(cfg["sft"]))
        checked.append("sft")
    if cfg.get("lora") is not None:
        from peft import LoraConfig

        _check("lora", lambda: LoraConfig(**cfg["lora"]))
        checked.append("lora")
    if cfg.get("backend", "vllm") == "vllm":
        try:
            from vllm import EngineArgs, SamplingParams
        except ImportError:
            return checked
        _check("engine_args", lambda: EngineArgs(model=cfg["model"], **(cfg.get("engine_args") or {})))
        checked.append("engine_args")
        for name in ("sampling", "eval_sampling"):
            params = dict(cfg.get(name) or {})
            params.pop("seed", None)  # the base of per-problem seeds, replaced per request
            _check(name, lambda params=params: SamplingParams(**params))
            checked.append(name)
    return checked


def main(argv: list[str] | None = None) -> None:
    from sdp.launch.process import die_with_parent, load_job

    die_with_parent()
    try:
        check_config(load_job(argv))
    except ConfigCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
