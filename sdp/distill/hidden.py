"""Hidden-state (feature) distillation: the student's inner representations match the teacher's.

FitNets-style hints (Romero et al., 2015), as in TinyBERT / MiniLM for transformers: for each
mapped pair (student layer s, teacher layer t) a learned linear projection takes the student's
hidden states (width d_s) to the teacher's width d_t, and the loss is

    hidden = mean over pairs of  sum over completion tokens of  dist(W_s h_s + b_s, h_t)  / n_tokens

with `dist` the per-token mean squared error or 1 - cosine similarity. Layer indices are Hugging
Face's `output_hidden_states` indices: 0 is the embedding output, i the output of decoder layer i
(the last one after the final norm). `auto` maps embeddings to embeddings and student layer i to
teacher layer round(i * L_t / L_s), so the last layers meet.

The projections are a plain `nn.Module` (`HiddenProjections`) owned by `KDSFTTrainer`, which adds
them to the optimizer and prepares them with the Trainer's accelerator (DDP under a
multi-process launch); they are saved beside the student checkpoint, never inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdp.distill.config import HIDDEN_LOSSES

IGNORE_INDEX = -100
PROJECTIONS_FILE = "hidden_projections.pt"


def _text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def auto_layer_map(student_layers: int, teacher_layers: int) -> tuple[tuple[int, int], ...]:
    """Embeddings to embeddings, student layer i to teacher layer round(i * L_t / L_s) (i = 1..L_s)."""
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(f"layer counts must be >= 1, got student {student_layers}, teacher {teacher_layers}")
    pairs = [(0, 0)]
    for i in range(1, student_layers + 1):
        pairs.append((i, max(1, round(i * teacher_layers / student_layers))))
    return tuple(pairs)


def resolve_layer_map(
    layers: str | Sequence[Sequence[int]],
    student_config: Any,
    teacher_config: Any,
    student_name: str = "<student>",
    teacher_name: str = "<teacher>",
) -> tuple[tuple[int, int], ...]:
    """The (student_layer, teacher_layer) pairs, checked against both models' layer counts.

    ValueError names both models for a malformed pair, an index out of range, or a duplicate pair.
    """
    s_layers = int(_text_config(student_config).num_hidden_layers)
    t_layers = int(_text_config(teacher_config).num_hidden_layers)
    where = (
        f"student model {student_name!r} ({s_layers} layers: hidden states 0..{s_layers}) and teacher model "
        f"{teacher_name!r} ({t_layers} layers: hidden states 0..{t_layers})"
    )
    if isinstance(layers, str):
        if layers != "auto":
            raise ValueError(f"kd.hidden.layers must be 'auto' or [[student, teacher], ...], got {layers!r} for {where}")
        return auto_layer_map(s_layers, t_layers)
    pairs: list[tuple[int, int]] = []
    for i, pair in enumerate(layers):
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
        ):
            raise ValueError(f"kd.hidden.layers[{i}] = {pair!r} is not a [student_layer, teacher_layer] pair, for {where}")
        s, t = int(pair[0]), int(pair[1])
        if not 0 <= s <= s_layers:
            raise ValueError(f"kd.hidden.layers[{i}] = [{s}, {t}]: student layer {s} is out of range for {where}")
        if not 0 <= t <= t_layers:
            raise ValueError(f"kd.hidden.layers[{i}] = [{s}, {t}]: teacher layer {t} is out of range for {where}")
        if (s, t) in pairs:
            raise ValueError(f"kd.hidden.layers[{i}] = [{s}, {t}] is given twice, for {where}")
        pairs.append((s, t))
    if not pairs:
        raise ValueError(f"kd.hidden.layers is empty, for {where}")
    return tuple(pairs)


class HiddenProjections(nn.Module):
    """One learned linear map student width -> teacher width per (student_layer, teacher_layer) pair."""

    def __init__(self, layer_map: Sequence[tuple[int, int]], student_hidden: int, teacher_hidden: int) -> None:
        super().__init__()
        self.layer_map = tuple((int(s), int(t)) for s, t in layer_map)
        self.student_hidden = int(student_hidden)
        self.teacher_hidden = int(teacher_hidden)
        self.proj = nn.ModuleList(nn.Linear(self.student_hidden, self.teacher_hidden) for _ in self.layer_map)

    def forward(self, student_hidden_states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Projected student states, one `(batch, seq, teacher_hidden)` tensor per mapped pair."""
        out = []
        for (s, _), proj in zip(self.layer_map, self.proj):
            h = student_hidden_states[s]
            out.append(proj(h.to(proj.weight.dtype)))
        return out

    def extra_state(self) -> dict[str, Any]:
        """What a saved file must match to be loaded back (see `load_projections`)."""
        return {"layer_map": [list(p) for p in self.layer_map], "student_hidden": self.student_hidden,
                "teacher_hidden": self.teacher_hidden}


def save_projections(module: HiddenProjections, path: Any) -> None:
    """Write the projections' weights and shape description to `path` (a `torch.save` file)."""
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                **module.extra_state()}, path)


def load_projections(module: HiddenProjections, path: Any, student_name: str, teacher_name: str) -> None:
    """Load weights saved by `save_projections`; ValueError naming both models if they do not fit."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    expected = module.extra_state()
    got = {k: saved.get(k) for k in expected}
    if got != expected:
        raise ValueError(
            f"{path}: hidden projections for {got} do not fit student model {student_name!r} and teacher model "
            f"{teacher_name!r}, which need {expected}"
        )
    module.load_state_dict(saved["state_dict"])


def hidden_loss(
    projected: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    labels: torch.Tensor,
    loss: str = "mse",
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """Mean over pairs of the per-token distance, summed over completion tokens and normalised.

    A token counts when its own label is not -100 (the completion; prompt and padding are out).
    The sum is divided by `num_items_in_batch` when given (the Trainer's count, as for the CE),
    else by the number of completion tokens. `loss` is 'mse' (mean over dimensions) or 'cosine'.
    """
    if loss not in HIDDEN_LOSSES:
        raise ValueError(f"hidden loss must be one of {list(HIDDEN_LOSSES)}, got {loss!r}")
    if len(projected) != len(teacher_states) or not projected:
        raise ValueError(f"{len(projected)} projected student states for {len(teacher_states)} teacher states")
    mask = (labels != IGNORE_INDEX).float()
    if num_items_in_batch is None:
        denom = mask.sum().clamp(min=1)
    else:
        denom = torch.as_tensor(num_items_in_batch, device=mask.device).float().clamp(min=1)
    total = torch.zeros((), device=mask.device)
    for p, t in zip(projected, teacher_states):
        if p.shape != t.shape:
            raise ValueError(f"projected student states {tuple(p.shape)} and teacher states {tuple(t.shape)} differ")
        p, t = p.float(), t.detach().float()
        if loss == "mse":
            per_token = (p - t).pow(2).mean(-1)
        else:
            per_token = 1.0 - F.cosine_similarity(p, t, dim=-1, eps=1e-8)
        total = total + (per_token * mask).sum()
    return total / (denom * len(projected))
