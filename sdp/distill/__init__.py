"""Teacher -> student distillation in the SFT stage: output KD (`kd`: hard labels + temperature-scaled logits)
and hidden-state KD (`kd.hidden`: the student's projected hidden states match the teacher's).

`KDConfig` / `HiddenKDConfig` import without torch (`sdp.distill.config`); the trainer and the
losses load torch, transformers and TRL on first use.
"""

from __future__ import annotations

from typing import Any

from sdp.distill.config import HiddenKDConfig, KDConfig

_LAZY = {
    "KDSFTTrainer": "sdp.distill.kd",
    "check_same_tokenizer": "sdp.distill.kd",
    "kd_loss": "sdp.distill.kd",
    "HiddenProjections": "sdp.distill.hidden",
    "hidden_loss": "sdp.distill.hidden",
    "resolve_layer_map": "sdp.distill.hidden",
}

__all__ = ["HiddenKDConfig", "KDConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    # Lazy: `import sdp.distill.config` from sdp.config must not pull in torch
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sdp.distill' has no attribute {name!r}")
