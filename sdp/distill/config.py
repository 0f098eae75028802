"""Distillation options (`kd` of the round config), validated without importing torch.

`sdp.config` calls `KDConfig.from_dict(cfg.kd)` at start-up, so a misspelt key or a bad value
stops the round before any model is loaded; the train stage calls
`KDConfig(**kd).trainer_kwargs()` for the keyword arguments of `sdp.distill.kd.KDSFTTrainer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HIDDEN_LOSSES = ("mse", "cosine")


def _number(section: str, key: str, value: Any) -> float:
    # bool is an int subclass: `alpha: true` is a typo, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{section}.{key} must be a number, got {value!r}")
    return float(value)


def _check_keys(section: str, cls: type, mapping: Mapping[str, Any]) -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{section} must be a mapping, got {mapping!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {unknown}; expected {', '.join(known)}")


@dataclass(frozen=True)
class HiddenKDConfig:
    """Hidden-state (feature) distillation: the student's hidden states, linearly projected, match the teacher's.

    Layer indices follow Hugging Face's `output_hidden_states`: 0 is the embedding output, i is
    the output of decoder layer i (1..num_hidden_layers).
    """

    weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the hidden-state term added to the loss: CE/KL mix + weight * hidden. >= 0."},
    )
    layers: str | tuple[tuple[int, int], ...] = field(
        default="auto",
        metadata={
            "help": "'auto' (embeddings to embeddings, student layers spread uniformly over the teacher's) or "
            "a list of [student_layer, teacher_layer] pairs (0 = embeddings)."
        },
    )
    loss: str = field(
        default="mse",
        metadata={"help": "'mse' (mean squared error per dimension) or 'cosine' (1 - cosine similarity), per token."},
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _number("kd.hidden", "weight", self.weight))
        if self.weight < 0:
            raise ValueError(f"kd.hidden.weight must be >= 0, got {self.weight}")
        if self.loss not in HIDDEN_LOSSES:
            raise ValueError(f"kd.hidden.loss must be one of {list(HIDDEN_LOSSES)}, got {self.loss!r}")
        if isinstance(self.layers, str):
            if self.layers != "auto":
                raise ValueError(f"kd.hidden.layers must be 'auto' or a list of [student, teacher] pairs, got {self.layers!r}")
            return
        pairs = []
        for i, pair in enumerate(self.layers if isinstance(self.layers, (list, tuple)) else [self.layers]):
            if (
                not isinstance(pair, (list, tuple))
                or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
            ):
                raise ValueError(
                    f"kd.hidden.layers[{i}] must be a [student_layer, teacher_layer] pair of integers, got {pair!r}"
                )
            if min(pair) < 0:
                raise ValueError(f"kd.hidden.layers[{i}] = {list(pair)}: layer indices must be >= 0")
            pairs.append((int(pair[0]), int(pair[1])))
        if not pairs:
            raise ValueError("kd.hidden.layers is empty; give at least one [student_layer, teacher_layer] pair or 'auto'")
        object.__setattr__(self, "layers", tuple(pairs))

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> HiddenKDConfig:
        """Validated options from the `kd.hidden` mapping; ValueError names an unknown key or a bad value."""
        _check_keys("kd.hidden", cls, mapping)
        return cls(**mapping)

    def to_dict(self) -> dict[str, Any]:
        layers = self.layers if isinstance(self.layers, str) else [list(p) for p in self.layers]
        return {"weight": self.weight, "layers": layers, "loss": self.loss}


@dataclass(frozen=True)
class KDConfig:
    """Distillation options: the round config's `kd` mapping, validated.

    `KDConfig(**cfg.kd).trainer_kwargs()` are the extra keyword arguments of `KDSFTTrainer`.
    """

    teacher_model: str | None = field(
        default=None,
        metadata={
            "help": "Path of the teacher model whose logits are the soft labels; must share the student's "
            "tokenizer. None: the round's sampler model (`teacher_model` of the round config)."
        },
    )
    alpha: float = field(
        default=0.5,
        metadata={"help": "Weight of the soft-label term: loss = (1 - alpha) * CE + alpha * T^2 * KL. In [0, 1]."},
    )
    temperature: float = field(
        default=2.0,
        metadata={"help": "Softmax temperature T of teacher and student logits in the KL term (usually 1 to 5)."},
    )
    hidden: HiddenKDConfig | None = field(
        default=None,
        metadata={
            "help": "Hidden-state distillation {weight, layers, loss} (a mapping is converted); None: output KD only."
        },
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _number("kd", "alpha", self.alpha))
        object.__setattr__(self, "temperature", _number("kd", "temperature", self.temperature))
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"kd.alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0.0:
            raise ValueError(f"kd.temperature must be > 0, got {self.temperature}")
        if self.teacher_model is not None and not isinstance(self.teacher_model, str):
            raise ValueError(f"kd.teacher_model must be a path (a string), got {self.teacher_model!r}")
        if isinstance(self.hidden, Mapping):
            # The job file and the YAML config carry `hidden` as a mapping
            object.__setattr__(self, "hidden", HiddenKDConfig.from_dict(self.hidden))
        elif self.hidden is not None and not isinstance(self.hidden, HiddenKDConfig):
            raise ValueError(f"kd.hidden must be a mapping {{weight, layers, loss}} or null, got {self.hidden!r}")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> KDConfig:
        """Validated options from the `kd` mapping; ValueError names an unknown key or a bad value."""
        _check_keys("kd", cls, mapping)
        return cls(**mapping)

    def trainer_kwargs(self, default_teacher: str | None = None) -> dict[str, Any]:
        """The extra keyword arguments of `KDSFTTrainer`; `default_teacher` fills a missing teacher."""
        teacher = self.teacher_model or default_teacher
        if teacher is None:
            raise ValueError("kd: no teacher model; set kd.teacher_model (or the round's teacher_model)")
        kwargs: dict[str, Any] = {"teacher_model": teacher, "alpha": self.alpha, "temperature": self.temperature}
        if self.hidden is not None:
            kwargs["hidden"] = self.hidden
        return kwargs
