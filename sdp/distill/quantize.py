"""Quantization of the trained model with torchao: QAT (fake-quant training), PTQ, and loadable checkpoints.

Three schemes, each a torchao post-training config that QAT derives its fake quantizers from:

- `int4_weight`: 4-bit symmetric weights in groups of `group_size` input channels, float activations
  (`IntxWeightOnlyConfig(weight_dtype=int4)`);
- `int8_dynamic_act_int4_weight`: the same 4-bit weights, activations quantized to int8 per token at
  run time (`Int8DynamicActivationIntxWeightConfig`, the scheme of torchtune's QAT recipes);
- `int8_weight`: 8-bit symmetric weights in groups (`IntxWeightOnlyConfig(weight_dtype=int8)`).

Every `nn.Linear` of the decoder is quantized; the embeddings and the output head stay in full
precision (they are tied in the bundled models, and the head is where 4 bits hurt most).

QAT follows torchao: `prepare_qat` swaps each linear for a `FakeQuantizedLinear` (the forward rounds
the weights to the scheme's grid, the backward passes straight through), training adapts the float
weights to that grid, and `convert_qat` swaps back and quantizes for real with the same config, so the
converted model computes what the fake-quantized one did. `save_quantized` writes a transformers
checkpoint with a `TorchAoConfig` (`quant_method: torchao`) in safetensors; `transformers`
`from_pretrained` and vLLM's CPU build (`quantization=torchao`, detected from config.json) both load it.

Weights are stored as torchao's `IntxUnpackedToInt8Tensor`: one int8 per weight (int4 values are not
packed two to a byte on CPU) plus one scale per group, so int4 and int8 checkpoints have the same
size on disk; int4 differs in accuracy, not in bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

SCHEMES = ("int4_weight", "int8_dynamic_act_int4_weight", "int8_weight")
WEIGHT_FILES = (".safetensors", ".bin")


@dataclass(frozen=True)
class QuantizeConfig:
    """The train stage's `quantize` mapping, validated: which torchao scheme, and its group size."""

    scheme: str = field(
        default="int4_weight",
        metadata={"help": f"Quantization scheme, one of {', '.join(SCHEMES)}."},
    )
    group_size: int = field(
        default=32,
        metadata={
            "help": "Input channels sharing one weight scale; must divide the in_features of every quantized "
            "linear layer (hidden_size and intermediate_size)."
        },
    )

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"quantize.scheme: unknown scheme {self.scheme!r}; expected one of {', '.join(SCHEMES)}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"quantize.group_size must be a positive integer, got {self.group_size!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | QuantizeConfig) -> QuantizeConfig:
        """Build from the config's mapping; unknown keys are an error naming them."""
        if isinstance(data, QuantizeConfig):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"quantize must be a mapping {{scheme, group_size}}, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"quantize: unknown key(s) {unknown}; expected {sorted(known)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def base_config(self) -> Any:
        """The torchao post-training config of this scheme (QAT derives its fake quantizers from it)."""
        from torchao.quantization import (
            Int8DynamicActivationIntxWeightConfig,
            IntxWeightOnlyConfig,
            PerGroup,
        )

        group = PerGroup(self.group_size)
        if self.scheme == "int4_weight":
            return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=group)
        if self.scheme == "int8_dynamic_act_int4_weight":
            return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=group)
        return IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=group)


def _model_name(model: torch.nn.Module) -> str:
    return getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", "") or (
        type(model).__name__
    )


def _excluded(model: torch.nn.Module) -> set[int]:
    """ids of the modules that stay in full precision: the input and output embeddings."""
    out: set[int] = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        if module is not None:
            out.add(id(module))
    return out


def quantized_linear_names(model: torch.nn.Module) -> list[str]:
    """Qualified names of the linear layers the schemes quantize (every `nn.Linear` but the output head)."""
    skip = _excluded(model)
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and id(m) not in skip]


def check_model(model: torch.nn.Module, cfg: QuantizeConfig) -> None:
    """Raise ValueError naming the model and layer when `cfg.group_size` does not divide a layer's inputs."""
    name = _model_name(model)
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if hidden is not None and hidden % cfg.group_size:
        raise ValueError(
            f"quantize.group_size {cfg.group_size} does not divide the hidden size {hidden} of model {name!r}; "
            f"choose a divisor of {hidden} (e.g. {_divisor_hint(hidden)})"
        )
    layers = quantized_linear_names(model)
    if not layers:
        raise ValueError(f"model {name!r} has no linear layers to quantize")
    modules = dict(model.named_modules())
    for layer in layers:
        in_features = modules[layer].in_features
        if in_features % cfg.group_size:
            raise ValueError(
                f"quantize.group_size {cfg.group_size} does not divide in_features {in_features} of layer "
                f"{layer!r} in model {name!r}; choose a divisor of {in_features} (e.g. {_divisor_hint(in_features)})"
            )


def _divisor_hint(n: int) -> str:
    return ", ".join(str(d) for d in (16, 32, 64, 128) if n % d == 0) or "1"


def _linear_filter(model: torch.nn.Module) -> Any:
    # Never match the root: quantize_ does not descend into a module the filter accepts.
    skip = _excluded(model)
    return lambda module, fqn: isinstance(module, torch.nn.Linear) and bool(fqn) and id(module) not in skip


def is_fake_quantized(model: torch.nn.Module) -> bool:
    """Whether `prepare_qat` has been applied (some layer is a torchao `FakeQuantizedLinear`)."""
    from torchao.quantization.qat import FakeQuantizedLinear

    return any(isinstance(m, FakeQuantizedLinear) for m in model.modules())


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether some weight is a torchao quantized tensor (after `convert_qat` or `quantize_ptq`)."""
    from torchao.utils import TorchAOBaseTensor

    return any(isinstance(p, TorchAOBaseTensor) for p in model.parameters())


def prepare_qat(model: torch.nn.Module, cfg: QuantizeConfig | Mapping[str, Any]) -> torch.nn.Module:
    """Swap the quantized linears for fake-quantized ones (torchao `QATConfig(step="prepare")`), in place."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    cfg = QuantizeConfig.from_dict(cfg)
    check_model(model, cfg)
    if is_fake_quantized(model) or is_quantized(model):
        raise ValueError(f"model {_model_name(model)!r} is already quantized or prepared for QAT")
    quantize_(model, QATConfig(cfg.base_config(), step="prepare"), filter_fn=_linear_filter(model))
    return model


def convert_qat(model: torch.nn.Module, cfg: QuantizeConfig | Mapping[str, Any]) -> torch.nn.Module:
    """Replace the fake-quantized linears by really quantized ones (torchao `QATConfig(step="convert")`)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import FakeQuantizedLinear, QATConfig

    cfg = QuantizeConfig.from_dict(cfg)
    if not is_fake_quantized(model):
        raise ValueError(f"model {_model_name(model)!r} has no fake-quantized layers: call prepare_qat first")
    quantize_(
        model,
        QATConfig(cfg.base_config(), step="convert"),
        filter_fn=lambda module, fqn: isinstance(module, FakeQuantizedLinear),
    )
    return model


def quantize_ptq(model: torch.nn.Module, cfg: QuantizeConfig | Mapping[str, Any]) -> torch.nn.Module:
    """Post-training quantization (torchao `quantize_` with the scheme's config), in place; no training."""
    from torchao.quantization import quantize_

    cfg = QuantizeConfig.from_dict(cfg)
    check_model(model, cfg)
    if is_fake_quantized(model):
        raise ValueError(f"model {_model_name(model)!r} is prepared for QAT: use convert_qat, not quantize_ptq")
    quantize_(model, cfg.base_config(), filter_fn=_linear_filter(model))
    return model


def torchao_hf_config(model: torch.nn.Module, cfg: QuantizeConfig) -> Any:
    """transformers' `TorchAoConfig` describing what `convert_qat` / `quantize_ptq` did to `model`."""
    from transformers import TorchAoConfig

    skip = _excluded(model)
    keep = sorted(n for n, m in model.named_modules() if n and id(m) in skip and isinstance(m, torch.nn.Linear))
    return TorchAoConfig(quant_type=cfg.base_config(), modules_to_not_convert=keep or None)


def save_quantized(
    model: torch.nn.Module, tokenizer: Any, path: str | os.PathLike, cfg: QuantizeConfig | Mapping[str, Any]
) -> int:
    """Save a quantized model as a transformers torchao checkpoint (safetensors); return its weight bytes.

    The config.json gets `quantization_config` (`quant_method: torchao`), so `load_quantized`,
    `AutoModelForCausalLM.from_pretrained` and vLLM load it without further arguments.
    """
    from transformers.quantizers import AutoHfQuantizer

    cfg = QuantizeConfig.from_dict(cfg)
    if is_fake_quantized(model):
        raise ValueError("save_quantized: the model is still fake-quantized; call convert_qat first")
    if not is_quantized(model):
        raise ValueError("save_quantized: the model has no quantized weights; call convert_qat or quantize_ptq first")
    hf_cfg = torchao_hf_config(model, cfg)
    model.config.quantization_config = hf_cfg
    # save_pretrained flattens torchao tensor subclasses into safetensors through the model's quantizer.
    model.hf_quantizer = AutoHfQuantizer.from_config(hf_cfg, pre_quantized=True)
    out = Path(path)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return checkpoint_bytes(out)


def load_quantized(path: str | os.PathLike) -> Any:
    """Load a checkpoint written by `save_quantized` (a transformers model with torchao weights)."""
    from transformers import AutoModelForCausalLM

    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no such file; not a saved model directory")
    import json

    qcfg = json.loads(config.read_text()).get("quantization_config") or {}
    if qcfg.get("quant_method") != "torchao":
        raise ValueError(f"{config}: quantization_config.quant_method is {qcfg.get('quant_method')!r}, not 'torchao'")
    return AutoModelForCausalLM.from_pretrained(str(path))


def checkpoint_bytes(path: str | os.PathLike) -> int:
    """Bytes of the weight files (safetensors / bin) of a saved model directory."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file() and f.name.endswith(WEIGHT_FILES))


# The train stage's hook: two calls, before and after training.


def apply_quantize(model: torch.nn.Module, quantize: Mapping[str, Any] | None) -> torch.nn.Module:
    """Before training: fake-quantize `model` per the `quantize` mapping (no-op when it is empty)."""
    if not quantize:
        return model
    return prepare_qat(model, QuantizeConfig.from_dict(quantize))


def finish_quantize(
    model: torch.nn.Module, quantize: Mapping[str, Any], tokenizer: Any, out_dir: str | os.PathLike
) -> dict[str, Any]:
    """After training: convert the fake-quantized `model`, save it to `out_dir`; stats for the manifest."""
    cfg = QuantizeConfig.from_dict(quantize)
    convert_qat(model, cfg)
    size = save_quantized(model, tokenizer, out_dir, cfg)
    return {"quantize": cfg.to_dict(), "checkpoint_bytes": size}


def kd_teacher(kd: Mapping[str, Any] | None, teacher_model: str | None, init_model: str) -> str | None:
    """The soft-label teacher of a quantized round: kd.teacher_model, else the round's teacher, else the
    full-precision model the round starts from (quantization-aware distillation from itself)."""
    if not kd:
        return None
    return kd.get("teacher_model") or teacher_model or init_model
