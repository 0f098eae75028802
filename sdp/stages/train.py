"""Fine-tune on the kept traces with TRL's `SFTTrainer`; write one checkpoint per round.

Run by the round in its own process (`python -m sdp.stages.train JOB.json`). The SFT set holds
rendered prompt / completion pairs; they are tokenized here exactly as the sampler does
(prompt ids from `sdp.stages.sample.encode_prompt`, then the completion's ids and EOS), and the
loss covers the completion only (labels of prompt tokens are -100) unless the SFT config
sets `completion_only_loss: false`. `SFTConfig` keyword arguments pass through from the
config. With `lora`, peft adapters are trained and merged into the saved checkpoint, so
every checkpoint is a plain model vLLM can load. With `kd`, the trainer is
`sdp.distill.kd.KDSFTTrainer` (soft labels from a teacher at temperature T).

Resume: the trainer's `output_dir` is the round's `trainer/` directory; if the SFT config
saves checkpoints (`save_strategy: steps`) and a killed run left one, training resumes from
it, else it restarts from scratch. Either way the seeded weights are the same (bit for bit on
CPU); only the reported `train_loss`, TRL's running average, covers the steps of the last
process alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdp.rundir import atomic_replace_dir, atomic_write_json, fresh_tmp_dir, read_jsonl
from sdp.stages.sample import encode_prompt
from sdp.launch.process import die_with_parent, load_job

logger = logging.getLogger(__name__)


def tokenize_pairs(
    tokenizer: Any, pairs: list[dict], completion_only: bool = True
) -> dict[str, list[list[int]]]:
    """input_ids / labels columns for SFTTrainer (already processed, so TRL does not re-tokenize)."""
    input_ids, labels = [], []
    for pair in pairs:
        prompt_ids = encode_prompt(tokenizer, pair["prompt"])
        completion_ids = list(tokenizer(pair["completion"], add_special_tokens=False)["input_ids"])
        completion_ids.append(tokenizer.eos_token_id)
        ids = prompt_ids + completion_ids
        input_ids.append(ids)
        labels.append(([-100] * len(prompt_ids) if completion_only else prompt_ids) + completion_ids)
    return {"input_ids": input_ids, "labels": labels}


def _last_trainer_checkpoint(work_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(work_dir)) if work_dir.is_dir() else None


def train(job: Mapping[str, Any]) -> dict[str, Any]:
    """Train per the job and save the checkpoint atomically; return stats for the manifest."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    pairs = read_jsonl(job["sft_path"])
    output = Path(job["output"])
    work_dir = Path(job["work_dir"])
    sft_args = dict(job.get("sft_args") or {})
    completion_only = bool(sft_args.pop("completion_only_loss", True) is not False)
    sft_args.setdefault("seed", int(job["seed"]))
    sft_args.setdefault("data_seed", int(job["seed"]))
    sft_args.setdefault("disable_tqdm", not job.get("progress", True))
    sft_args.setdefault("use_cpu", not torch.cuda.is_available())
    tokenizer = AutoTokenizer.from_pretrained(job["init_model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = Dataset.from_dict(tokenize_pairs(tokenizer, pairs, completion_only))
    # Seed before the model is built: LoRA initialisation draws random numbers.
    torch.manual_seed(int(sft_args["seed"]))
    model = AutoModelForCausalLM.from_pretrained(job["init_model"], dtype=torch.float32)
    args = SFTConfig(output_dir=str(work_dir), completion_only_loss=completion_only, **sft_args)
    kwargs: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": dataset,
        "processing_class": tokenizer,
    }
    if job.get("lora"):
        from peft import LoraConfig

        kwargs["peft_config"] = LoraConfig(**job["lora"])
    trainer_cls = SFTTrainer
    kd = job.get("kd")
    if kd:
        from sdp.distill.kd import KDConfig, KDSFTTrainer

        trainer_cls = KDSFTTrainer
        kwargs.update(KDConfig(**kd).trainer_kwargs())
    trainer = trainer_cls(**kwargs)
    resume = _last_trainer_checkpoint(work_dir)
    if resume:
        logger.info("resuming training from %s", resume)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    trained = trainer.model
    if job.get("lora"):
        trained = trained.merge_and_unload()
    tmp = fresh_tmp_dir(output.parent, output.name)
    trained.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_replace_dir(tmp, output)
    return {
        "examples": len(pairs),
        "steps": int(result.global_step),
        "train_loss": float(result.training_loss),
        "train_seconds": round(seconds, 3),
        "resumed_from": resume,
    }


def main(argv: list[str] | None = None) -> None:
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    job = load_job(argv)
    atomic_write_json(job["stats"], train(job))


if __name__ == "__main__":
    main()
