"""Soft-label knowledge distillation for the SFT stage.

The student trains on verified traces (hard labels) and, optionally, on the teacher's full
next-token distribution over the same completion tokens (soft labels, Hinton et al., 2015):

    loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

Both terms are averaged over completion tokens only (labels != -100). The T^2 factor keeps the
gradient of the soft term on the same scale as the hard term when T changes. With `hidden`
(`kd.hidden`), `weight * hidden_loss` over projected hidden states is added (`sdp.distill.hidden`).

Why not TRL's own distillation trainers (TRL 1.16): `DistillationTrainer` samples on-policy from a
prompt-only dataset and has no cross-entropy term; `trl.experimental.gkd.GKDTrainer` has no
cross-entropy term or T^2 scaling, wants a conversational ("messages") dataset and a `GKDConfig`,
and lives in the unstable `trl.experimental` namespace. The round trains on prompt/completion pairs
with a plain `SFTConfig`, so `KDSFTTrainer` subclasses `SFTTrainer` and replaces only its loss:
dataset preparation, completion-only masking, collation, checkpointing and logging stay TRL's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
)
from trl import SFTTrainer

from sdp.distill.config import HiddenKDConfig, KDConfig
from sdp.distill.hidden import (
    PROJECTIONS_FILE,
    HiddenProjections,
    hidden_loss,
    load_projections,
    resolve_layer_map,
    save_projections,
)

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    num_items_in_batch: torch.Tensor | int | None = None,
    return_parts: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T), averaged over labelled tokens.

    `labels` follow the Hugging Face convention (same positions as the inputs, -100 = ignored):
    the logits at position t score the label at position t + 1. Logits are `(batch, seq, vocab)`.
    Both terms are summed over tokens and divided by `num_items_in_batch` when given (the Trainer's
    gradient-accumulation-correct count), else by the number of labelled tokens. With
    `return_parts`, also returns the detached (CE, KL) per-token means for logging.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ; "
            "teacher and student must share the tokenizer and vocabulary size"
        )
    s = student_logits[:, :-1, :].float()
    t = teacher_logits[:, :-1, :].float()
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX

    ce_sum = F.cross_entropy(s.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="sum")
    # F.kl_div(input, target) = sum target * (log target - input): forward KL(teacher || student)
    kl_per_token = F.kl_div(
        F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1), reduction="none", log_target=True
    ).sum(-1)
    kl_sum = (kl_per_token * mask).sum()

    if num_items_in_batch is None:
        denom = mask.sum().clamp(min=1)
    else:
        denom = torch.as_tensor(num_items_in_batch, device=s.device).clamp(min=1)
    ce, kl = ce_sum / denom, kl_sum / denom
    loss = (1.0 - alpha) * ce + alpha * temperature**2 * kl
    if return_parts:
        return loss, ce.detach(), kl.detach()
    return loss


def _vocab_diff(teacher_vocab: dict[str, int], student_vocab: dict[str, int], limit: int = 3) -> str:
    diffs = []
    for token in sorted(set(teacher_vocab) | set(student_vocab)):
        if teacher_vocab.get(token) != student_vocab.get(token):
            diffs.append(f"{token!r}: teacher id {teacher_vocab.get(token)}, student id {student_vocab.get(token)}")
            if len(diffs) == limit:
                break
    return "; ".join(diffs)


def check_same_tokenizer(
    teacher_tok: PreTrainedTokenizerBase,
    student_tok: PreTrainedTokenizerBase,
    teacher_name: str | None = None,
    student_name: str | None = None,
) -> None:
    """Raise ValueError naming both models unless the two tokenizers map every token to the same id.

    Soft labels compare distributions id by id, so a different vocabulary (or a different EOS id,
    which ends every completion) would silently distil nonsense.
    """
    teacher_name = teacher_name or getattr(teacher_tok, "name_or_path", None) or "<teacher>"
    student_name = student_name or getattr(student_tok, "name_or_path", None) or "<student>"
    t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    problems = []
    if t_vocab != s_vocab:
        problems.append(
            f"vocabularies differ ({len(t_vocab)} vs {len(s_vocab)} tokens; e.g. {_vocab_diff(t_vocab, s_vocab)})"
        )
    if teacher_tok.eos_token_id != student_tok.eos_token_id:
        problems.append(f"EOS ids differ ({teacher_tok.eos_token_id} vs {student_tok.eos_token_id})")
    if problems:
        raise ValueError(
            f"Teacher model {teacher_name!r} and student model {student_name!r} do not share a tokenizer: "
            + "; ".join(problems)
            + ". Soft-label distillation needs the same tokenizer; use a teacher from the student's family "
            "or train with hard labels only (no `kd`)."
        )


def _load_teacher_tokenizer(teacher: PreTrainedModel, path: str | None) -> PreTrainedTokenizerBase | None:
    source = path or getattr(teacher, "name_or_path", None)
    if not source or not os.path.isdir(source):
        return None
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        return None  # a model folder without tokenizer files: only the vocabulary size can be checked


class _ZeroGradCallback(TrainerCallback):
    """Zero a module's gradients at the start of training and after every optimizer step."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.module.zero_grad(set_to_none=True)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.module.zero_grad(set_to_none=True)


class KDSFTTrainer(SFTTrainer):
    """`SFTTrainer` whose loss mixes the hard-label CE with the teacher's temperature-scaled soft labels.

    Extra keyword arguments: `teacher_model` (a model or a path), `alpha`, `temperature`, and
    optionally `teacher_processing_class` (the teacher's tokenizer, checked against the student's;
    loaded from the teacher's folder when not given). The teacher runs in eval mode without
    gradients. With `alpha=0` the loss is SFT's cross-entropy (the teacher still runs).

    `hidden` (a `HiddenKDConfig` or its mapping) adds `weight * hidden_loss` over the mapped
    layers through learned projections (`self.hidden_projections`), trained in the same optimizer
    and prepared by the accelerator (DDP under a multi-process launch). They are never part of
    the saved model: each Trainer checkpoint-N/ holds them as `hidden_projections.pt` for resume,
    and after `train()` they are written to `hidden_projections_path` (default: beside the
    output directory, `<output_dir>/../hidden_projections.pt`, i.e. next to the round's checkpoint/).
    """

    _tag_names = ["trl", "sft", "sdp-kd"]

    def __init__(
        self,
        *args: Any,
        teacher_model: PreTrainedModel | str,
        alpha: float = 0.5,
        temperature: float = 2.0,
        teacher_processing_class: PreTrainedTokenizerBase | None = None,
        hidden: HiddenKDConfig | Mapping[str, Any] | None = None,
        hidden_projections_path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(hidden, Mapping):
            hidden = HiddenKDConfig.from_dict(hidden)
        KDConfig(alpha=alpha, temperature=temperature, hidden=hidden)  # validates the ranges
        self.hidden = hidden
        self.hidden_projections: torch.nn.Module | None = None  # create_optimizer may run inside super().__init__
        super().__init__(*args, **kwargs)
        if self.args.loss_type != "nll":
            raise ValueError(f"KDSFTTrainer supports loss_type='nll' only, got {self.args.loss_type!r}")

        teacher_path = teacher_model if isinstance(teacher_model, str) else None
        if isinstance(teacher_model, str):
            teacher_model = AutoModelForCausalLM.from_pretrained(teacher_model, dtype=self.model.dtype)
        teacher_name = teacher_path or getattr(teacher_model, "name_or_path", None) or "<teacher>"
        student_name = (
            getattr(self.model, "name_or_path", None)
            or getattr(self.processing_class, "name_or_path", None)
            or "<student>"
        )

        if teacher_processing_class is None:
            teacher_processing_class = _load_teacher_tokenizer(teacher_model, teacher_path)
        student_tok = getattr(self.processing_class, "tokenizer", self.processing_class)
        if teacher_processing_class is not None:
            check_same_tokenizer(teacher_processing_class, student_tok, teacher_name, student_name)
        t_vocab = teacher_model.config.get_text_config().vocab_size
        s_vocab = self.model.config.get_text_config().vocab_size
        if t_vocab != s_vocab:
            raise ValueError(
                f"Teacher model {teacher_name!r} has vocab_size {t_vocab} but student model {student_name!r} has "
                f"{s_vocab}; soft-label distillation compares their logits token by token and needs equal sizes."
            )

        teacher_model.eval()
        teacher_model.requires_grad_(False)
        if self.is_deepspeed_enabled:
            from trl.models import prepare_deepspeed

            self.teacher_model = prepare_deepspeed(teacher_model, self.accelerator)
        else:
            self.teacher_model = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
        self.alpha = alpha
        self.temperature = temperature
        self.teacher_name, self.student_name = teacher_name, student_name
        if hidden is not None:
            self._init_hidden(teacher_model, hidden_projections_path)

    # --- hidden-state distillation ----------------------------------------------------------------

    def _init_hidden(self, teacher: PreTrainedModel, path: str | os.PathLike[str] | None) -> None:
        if self.is_deepspeed_enabled:
            raise ValueError("kd.hidden is not supported with DeepSpeed (its optimizer would not hold the projections)")
        assert self.hidden is not None
        s_cfg = self.model.config.get_text_config()
        t_cfg = teacher.config.get_text_config()
        self.hidden_layer_map = resolve_layer_map(
            self.hidden.layers, s_cfg, t_cfg, self.student_name, self.teacher_name
        )
        # A private RNG: the projections' initialisation must not shift the data order or dropout
        # of the run, so that (c) soft labels and (d) + hidden states see the same batches
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.args.seed)
            projections = HiddenProjections(self.hidden_layer_map, s_cfg.hidden_size, t_cfg.hidden_size)
        # prepare_model: device placement, and a DDP wrapper under a multi-process launch so the
        # projections' gradients are averaged across ranks like the student's
        self.hidden_projections = self.accelerator.prepare_model(projections)
        # The Trainer zeroes only the model's gradients; without this the projections' would add up
        self.add_callback(_ZeroGradCallback(projections))
        out = Path(self.args.output_dir)
        self.hidden_projections_path = Path(path) if path is not None else out.parent / PROJECTIONS_FILE

    def _projections(self) -> HiddenProjections:
        assert self.hidden_projections is not None
        return self.accelerator.unwrap_model(self.hidden_projections)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """TRL's optimizer, plus one parameter group (no weight decay) holding the hidden projections."""
        optimizer = super().create_optimizer(model)
        if self.hidden_projections is not None:
            present = {id(p) for group in optimizer.param_groups for p in group["params"]}
            params = [p for p in self._projections().parameters() if id(p) not in present]
            if params:
                optimizer.add_param_group({"params": params, "weight_decay": 0.0})
        return optimizer

    def save_hidden_projections(self, path: str | os.PathLike[str]) -> None:
        """Write the projections (weights + layer map) to `path` atomically, from the main process only."""
        if self.hidden_projections is None or not self.is_world_process_zero():
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_projections(self._projections(), tmp)
        os.replace(tmp, path)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        if self.hidden_projections is not None:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            # Written before the Trainer's files, so a checkpoint that looks complete has them
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            self.save_hidden_projections(folder / PROJECTIONS_FILE)
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.hidden_projections is None:
            return
        path = Path(resume_from_checkpoint) / PROJECTIONS_FILE
        if not path.is_file():
            raise ValueError(
                f"{resume_from_checkpoint}: no {PROJECTIONS_FILE}; cannot resume hidden-state distillation of "
                f"student model {self.student_name!r} on teacher model {self.teacher_name!r} from this checkpoint"
            )
        load_projections(self._projections(), path, self.student_name, self.teacher_name)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        result = super().train(*args, **kwargs)
        if self.hidden_projections is not None:
            self.save_hidden_projections(self.hidden_projections_path)
        return result

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]
        # Labels stay out of the forward: the model's own loss would be a wasted extra CE pass
        forward_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        forward_inputs["use_cache"] = False
        if self.hidden_projections is not None:
            forward_inputs["output_hidden_states"] = True
        student_outputs = model(**forward_inputs)
        self.teacher_model.eval()
        with torch.no_grad():
            teacher_outputs = self.teacher_model(**forward_inputs)
        teacher_logits = teacher_outputs.logits

        loss, ce, kl = kd_loss(
            student_outputs.logits,
            teacher_logits,
            labels,
            self.alpha,
            self.temperature,
            num_items_in_batch=num_items_in_batch,
            return_parts=True,
        )
        hid = None
        if self.hidden_projections is not None and self.hidden is not None:
            projected = self.hidden_projections(student_outputs.hidden_states)
            targets = [teacher_outputs.hidden_states[t] for _, t in self.hidden_layer_map]
            hid = hidden_loss(projected, targets, labels, self.hidden.loss, num_items_in_batch)
            loss = loss + self.hidden.weight * hid
            hid = hid.detach()
        # Same scaling as SFTTrainer: `num_items_in_batch` counts every rank's tokens, DDP averages
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes

        if num_items_in_batch is not None:
            # Report per-token means, whatever the normaliser of the optimised loss was
            n_local = (labels[:, 1:] != IGNORE_INDEX).sum().clamp(min=1)
            scale = torch.as_tensor(num_items_in_batch, device=ce.device).float() / n_local
            ce, kl = ce * scale, kl * scale
            if hid is not None:
                n_hidden = (labels != IGNORE_INDEX).sum().clamp(min=1)
                hid = hid * torch.as_tensor(num_items_in_batch, device=hid.device).float() / n_hidden
        self._metrics[mode]["kd_ce"].append(self.accelerator.gather_for_metrics(ce).mean().item())
        self._metrics[mode]["kd_kl"].append(self.accelerator.gather_for_metrics(kl).mean().item())
        if hid is not None:
            self._metrics[mode]["kd_hidden"].append(self.accelerator.gather_for_metrics(hid).mean().item())
        return (loss, student_outputs) if return_outputs else loss
