"""Fine-tune on the kept traces with TRL's `SFTTrainer`; write one checkpoint per round.

Run by the round in its own process (`python -m sdp.stages.train JOB.json`, the job a
`TrainJob`), or under `accelerate launch` with `launcher: accelerate` (`run_train`). The SFT set
(rendered prompt / completion pairs) is loaded and tokenized by `sdp.stages.sft_set`: Arrow,
memory-mapped, cached in the trainer's work directory, tokenized exactly as the sampler does; the
loss covers the completion only unless the SFT config sets `completion_only_loss: false`. `SFTConfig` keyword arguments pass through from the config. With
`lora`, peft adapters are trained and merged into the saved checkpoint, so every checkpoint is a
plain model vLLM can load. With `kd`, the trainer is `sdp.distill.kd.KDSFTTrainer`.

Several processes (DDP, FSDP, DeepSpeed): every rank trains; the checkpoint is written through
`Trainer.save_model` (which gathers FSDP / ZeRO-3 shards) into one scratch directory, and only the
main process finishes it and renames it into place, and writes the stats.

Resume: the trainer's `output_dir` is the round's `trainer/` directory; if the SFT config
saves checkpoints (`save_strategy: steps`) and a killed run left one, training resumes from
it, else it restarts from scratch. Either way the seeded weights are the same (bit for bit on
CPU); only the reported `train_loss`, TRL's running average, covers the steps of the last
process alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdp.launch.process import stage_child
from sdp.rundir import atomic_replace_dir, atomic_write_json, fresh_tmp_dir
from sdp.sources.templates import DEFAULT_TEMPLATE, PromptTemplate
from sdp.stages.sft_set import load_sft, tokenize_sft

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass(frozen=True)
class TrainJob:
    """What one run of the train stage needs; the JSON file `python -m sdp.stages.train` reads."""

    init_model: str = field(metadata={"help": "Model (path) the round trains from."})
    sft_path: str | list[str] = field(
        metadata={"help": "The SFT set: a JSONL/parquet file, a list of shard files, or a directory of them."}
    )
    output: str = field(metadata={"help": "Where the finished checkpoint lands (renamed into place)."})
    work_dir: str = field(metadata={"help": "Trainer output_dir: its checkpoints (resume) and the datasets cache."})
    stats: str = field(metadata={"help": "JSON file the stage's stats are written to."})
    seed: int = field(default=0, metadata={"help": "Seed of the trainer, data order and LoRA init."})
    sft_args: dict[str, Any] = field(default_factory=dict, metadata={"help": "trl.SFTConfig keyword arguments."})
    lora: dict[str, Any] | None = field(default=None, metadata={"help": "peft.LoraConfig keyword arguments."})
    kd: dict[str, Any] | None = field(default=None, metadata={"help": "sdp.distill.KDConfig keyword arguments."})
    progress: bool = field(default=True, metadata={"help": "Show the trainer's progress bar."})
    launcher: Literal["process", "accelerate"] = field(
        default="process",
        metadata={"help": "process: one child process; accelerate: `accelerate launch` with num_processes ranks."},
    )
    num_processes: int = field(default=1, metadata={"help": "Training processes under the accelerate launcher."})
    accelerate_config: str | dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "accelerate config file, or its contents as a mapping (DDP, FSDP, DeepSpeed ZeRO-2/3), "
            "passed to `accelerate launch --config_file`. None: DDP (configs/accelerate/multi_cpu.yaml on CPU)."
        },
    )
    dtype: str = field(default="float32", metadata={"help": f"dtype the student is loaded in: {', '.join(DTYPES)}."})
    teacher_dtype: str | None = field(
        default=None, metadata={"help": "dtype of the KD teacher (None: the student's)."}
    )
    template: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "PromptTemplate fields the prompts were rendered with (their BOS rule); empty: the default."},
    )
    quantize: dict[str, Any] | None = field(
        default=None,
        metadata={"help": "sdp.distill.quantize.QuantizeConfig: fake-quantize (torchao QAT) before training, "
                  "convert and save a torchao checkpoint after."},
    )

    def __post_init__(self) -> None:
        if self.launcher not in ("process", "accelerate"):
            raise ValueError(f"launcher must be 'process' or 'accelerate', got {self.launcher!r}")
        if not isinstance(self.num_processes, int) or self.num_processes < 1:
            raise ValueError(f"num_processes must be a positive integer, got {self.num_processes!r}")
        if self.quantize and self.lora:
            raise ValueError("quantize with lora is not supported (LoRA on fake-quantized layers is untested)")
        for name in ("dtype", "teacher_dtype"):
            value = getattr(self, name)
            if value is not None and value not in DTYPES:
                raise ValueError(f"{name} must be one of {DTYPES}, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "train job") -> TrainJob:
        """A job from a mapping; unknown or missing fields are errors naming `source` and the field."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}; known: {sorted(names)}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err

    @classmethod
    def from_json(cls, path: str | Path) -> TrainJob:
        """Read a job file written by `to_json`."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {err.lineno}: not JSON ({err.msg})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a train job is a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path) -> Path:
        """Write the job file (atomically) and return its path."""
        atomic_write_json(path, self.to_dict())
        return Path(path)


def run_train(job: TrainJob, job_path: str | Path) -> dict[str, Any]:
    """Run the train stage in child process(es) per `job.launcher`; return the stats it wrote."""
    from sdp.launch.process import run_stage

    if job.launcher == "accelerate":
        from sdp.launch.accelerate import accelerate_launch

        job.to_json(job_path)
        accelerate_launch("sdp.stages.train", job_path, job.num_processes, job.accelerate_config)
    else:
        run_stage("sdp.stages.train", job.to_dict(), job_path)
    return json.loads(Path(job.stats).read_text())


def _last_trainer_checkpoint(work_dir: Path) -> str | None:
    """The newest complete `checkpoint-N` of the trainer: one killed while being written is skipped.

    The Trainer writes `trainer_state.json` last, so a checkpoint without it was cut short.
    """
    if not work_dir.is_dir():
        return None
    done = [p for p in work_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX); elsewhere torch emulates it, several times slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _torch_dtype(name: str) -> Any:
    import torch

    return name if name == "auto" else getattr(torch, name)


def _final_loss(log_history: Sequence[Mapping[str, Any]]) -> float | None:
    # Logged losses are averaged over all ranks by the Trainer; train_loss mixes in the local tail.
    losses = [float(e["loss"]) for e in log_history if "loss" in e]
    return losses[-1] if losses else None


def _save_checkpoint(trainer: Any, job: TrainJob, tokenizer: Any) -> dict[str, Any]:
    """Gather (FSDP / ZeRO-3) and save through the trainer; the main process finishes and renames."""
    output = Path(job.output)
    if job.quantize:
        # The converted torchao model is saved from the unwrapped module (DDP keeps full weights per rank).
        trainer.accelerator.wait_for_everyone()
        if not trainer.is_world_process_zero():
            return {}
        from sdp.distill.quantize import finish_quantize

        final = fresh_tmp_dir(output.parent, output.name)
        stats = finish_quantize(trainer.accelerator.unwrap_model(trainer.model), job.quantize, tokenizer, final)
        atomic_replace_dir(final, output)
        return stats
    # One scratch path for all ranks: save_model is collective under ZeRO-3 and FSDP.
    scratch = output.parent / f".{output.name}.tmp-save"
    if trainer.is_world_process_zero():
        shutil.rmtree(scratch, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(scratch))
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return {}
    (scratch / "training_args.bin").unlink(missing_ok=True)
    final = scratch
    if job.lora:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        # Merge from the saved adapter, so it works whether or not the trained weights were sharded.
        base = AutoModelForCausalLM.from_pretrained(job.init_model, dtype=_torch_dtype(job.dtype))
        merged = PeftModel.from_pretrained(base, str(scratch)).merge_and_unload()
        final = fresh_tmp_dir(output.parent, output.name)
        merged.save_pretrained(final)
        tokenizer.save_pretrained(final)
        shutil.rmtree(scratch, ignore_errors=True)
    atomic_replace_dir(final, output)
    return {}


def train(job: TrainJob | Mapping[str, Any]) -> dict[str, Any]:
    """Train per the job and save the checkpoint atomically; return stats (on every rank)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    if not isinstance(job, TrainJob):
        job = TrainJob.from_dict(job)
    work_dir = Path(job.work_dir)
    sft_args = dict(job.sft_args or {})
    completion_only = bool(sft_args.pop("completion_only_loss", True) is not False)
    sft_args.setdefault("seed", int(job.seed))
    sft_args.setdefault("data_seed", int(job.seed))
    sft_args.setdefault("disable_tqdm", not job.progress)
    sft_args.setdefault("use_cpu", not torch.cuda.is_available())
    if sft_args["use_cpu"]:
        # TRL turns bf16 autocast on by default; without native bf16 a CPU emulates it at a
        # fraction of fp32's speed, so the host decides unless the config does.
        sft_args.setdefault("bf16", native_bf16())
    # Building the arguments sets up the distributed state, which main_process_first needs.
    args = SFTConfig(output_dir=str(work_dir), completion_only_loss=completion_only, **sft_args)
    tokenizer = AutoTokenizer.from_pretrained(job.init_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with args.main_process_first(local=False, desc="SFT set"):
        raw = load_sft(job.sft_path, work_dir / "datasets")
        template = PromptTemplate.from_config(**job.template) if job.template else DEFAULT_TEMPLATE
        dataset = tokenize_sft(raw, tokenizer, completion_only, job.init_model, template)
    # Seed before the model is built: LoRA initialisation draws random numbers.
    torch.manual_seed(int(sft_args["seed"]))
    model = AutoModelForCausalLM.from_pretrained(job.init_model, dtype=_torch_dtype(job.dtype))
    if job.quantize:
        from sdp.distill.quantize import apply_quantize

        model = apply_quantize(model, job.quantize)
    kwargs: dict[str, Any] = {"model": model, "args": args, "train_dataset": dataset, "processing_class": tokenizer}
    if job.lora:
        from peft import LoraConfig

        kwargs["peft_config"] = LoraConfig(**job.lora)
    trainer_cls = SFTTrainer
    if job.kd:
        from sdp.distill.kd import KDConfig, KDSFTTrainer

        trainer_cls = KDSFTTrainer
        kwargs.update(KDConfig(**job.kd).trainer_kwargs())
        if job.teacher_dtype is not None:
            kwargs["teacher_model"] = AutoModelForCausalLM.from_pretrained(
                kwargs["teacher_model"], dtype=_torch_dtype(job.teacher_dtype)
            )
    trainer = trainer_cls(**kwargs)
    resume = _last_trainer_checkpoint(work_dir)
    if resume:
        logger.info("resuming training from %s", resume)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    quantized = _save_checkpoint(trainer, job, tokenizer)
    return {
        **quantized,
        "examples": len(raw),
        "steps": int(result.global_step),
        "train_loss": float(result.training_loss),
        "final_loss": _final_loss(trainer.state.log_history),
        "train_seconds": round(seconds, 3),
        "processes": int(trainer.accelerator.num_processes),
        "autocast": "bf16" if args.bf16 else "fp16" if args.fp16 else "none",
        "resumed_from": resume,
    }


def main(argv: list[str] | None = None) -> None:
    import sys

    from accelerate import PartialState

    stage_child()
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(f"usage: python -m sdp.stages.train JOB.json (got {args})")
    job = TrainJob.from_json(args[0])
    stats = train(job)
    if PartialState().is_main_process:
        atomic_write_json(job.stats, stats)


if __name__ == "__main__":
    main()
