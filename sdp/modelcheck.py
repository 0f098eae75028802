"""Models and contexts at start-up: each model field resolves to weights and a tokenizer, and fits the contexts.

`sdp.preflight` calls `check_models(cfg)` before any sampling. A local directory must hold a
`config.json`, weights and a tokenizer; anything else is taken as a hub id, which must resolve
(from the local cache when `HF_HUB_OFFLINE=1` or the hub's host does not answer a connect). Then
`engine_args.max_model_len` (for each model vLLM serves) and `sft.max_length` (for the model that
is trained) must not exceed the model's `max_position_embeddings`, unless its config scales RoPE.
Every failure is one `ModelCheckError` line naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf", "*.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tokenizer_config.json")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


class ModelCheckError(ValueError):
    """A model field that cannot be used (the message names the field)."""


def _local_config(field_name: str, path: Path) -> dict[str, Any]:
    if not (path / "config.json").is_file():
        raise ModelCheckError(f"{field_name}: {path} has no config.json (not a transformers model directory)")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise ModelCheckError(f"{field_name}: {path} has no weights ({', '.join(WEIGHT_PATTERNS[:3])}, ...)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelCheckError(f"{field_name}: {path} has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...)")
    return json.loads((path / "config.json").read_text())


def _hub_reachable() -> bool:
    """Whether the hub may be asked: not HF_HUB_OFFLINE, and its host answers within 3 s (one connect, no retries)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=3).close()
    except OSError:
        return False
    return True


def _hub_config(field_name: str, repo_id: str) -> dict[str, Any]:
    """config.json of a hub model: from the cache, else downloaded when the hub can be reached."""
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(repo_id, "config.json", local_files_only=True)).read_text())
    except Exception:
        pass
    if not _hub_reachable():
        raise ModelCheckError(
            f"{field_name}: {repo_id!r} is not a local directory, not in the hub cache, and the hub cannot be "
            f"reached (offline); download it first (`hf download {repo_id}`) or give a local path"
        )
    try:
        return json.loads(Path(hf_hub_download(repo_id, "config.json", etag_timeout=5)).read_text())
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160]
        raise ModelCheckError(
            f"{field_name}: {repo_id!r} is not a local directory and the hub does not serve it "
            f"({type(exc).__name__}: {reason})"
        ) from None


def model_config(field_name: str, model: str) -> dict[str, Any]:
    """The model's config.json as a dict, after checking that the model can be loaded (raise ModelCheckError)."""
    path = Path(model)
    if path.is_dir():
        return _local_config(field_name, path)
    if path.exists():
        raise ModelCheckError(f"{field_name}: {model} is a file, not a model directory")
    return _hub_config(field_name, model)


def context_length(config: Mapping[str, Any]) -> int | None:
    """The model's context in tokens, or None when unknown or stretched by RoPE scaling."""
    for cfg in (config, config.get("text_config") or {}):
        scaling = cfg.get("rope_scaling") or {}
        rope = cfg.get("rope_parameters") or {}
        if scaling or rope.get("rope_type", "default") != "default":
            return None
        for key in CONTEXT_KEYS:
            if isinstance(cfg.get(key), int):
                return int(cfg[key])
    return None


def _fits(field_name: str, value: Any, model_field: str, model: str, config: Mapping[str, Any]) -> None:
    limit = context_length(config)
    if isinstance(value, int) and limit is not None and value > limit:
        raise ModelCheckError(
            f"{field_name}: {value} is beyond the context of {model_field} {model} "
            f"(max_position_embeddings {limit}); set it to at most {limit}"
        )


def check_models(cfg: Mapping[str, Any]) -> None:
    """Check `model`, `teacher_model` and `kd.teacher_model`, and the contexts asked of them."""
    engine_args = cfg.get("engine_args") or {}
    sft = cfg.get("sft") or {}
    kd = cfg.get("kd") or {}
    fields = {"model": cfg.get("model"), "teacher_model": cfg.get("teacher_model"),
              "kd.teacher_model": kd.get("teacher_model") if isinstance(kd, Mapping) else None}
    for field_name, model in fields.items():
        if not model:
            continue
        config = model_config(field_name, str(model))
        if field_name in ("model", "teacher_model") and cfg.get("backend", "vllm") == "vllm":
            _fits("engine_args.max_model_len", engine_args.get("max_model_len"), field_name, model, config)
        if field_name == "model":
            _fits("sft.max_length", sft.get("max_length"), field_name, model, config)
