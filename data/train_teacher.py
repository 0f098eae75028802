"""Train the embedded default's teacher: the student's base trained further on many more worked examples.

    python -m data.train_teacher                 # writes data/teacher/ (not committed, reproducible)
    python -m data.train_teacher --out /tmp/teacher --student /tmp/base

The teacher starts from the student's base model (`--student`, default data/model) and keeps its
tokenizer, so the two share every token id and soft-label distillation can compare their
distributions. It is "better trained", not larger: on two shared CPU cores a wider model costs too
much to train, and more worked examples are what makes a teacher here. Its worked examples are
the seed sets plus fresh problems drawn from `data.generate`'s generators with their own seed
stream; any problem that is in a bundled split (held-out, pool or seed) is skipped, so the teacher
never sees a held-out problem and has not memorised the pool it will later solve.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
from pathlib import Path

from data.generate import GENERATORS, build
from data.train_base import DATA_DIR, PLAIN_PROMPT_TEMPLATE, SEED, save_model, seed_examples

logger = logging.getLogger(__name__)


def fresh_worked_examples(domain: str, count: int, seed: str) -> list[dict]:
    """`count` prompt/completion pairs of `domain` that are in none of the bundled splits."""
    taken = {r["prompt"] for rows in build().values() for r in rows}
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < count and attempts < 50 * count:
        attempts += 1
        _, record, completion = GENERATORS[domain](rng)
        if record["prompt"] in taken or record["prompt"] in seen:
            continue
        seen.add(record["prompt"])
        rows.append({"prompt": PLAIN_PROMPT_TEMPLATE.format(prompt=record["prompt"]), "completion": completion})
    if len(rows) < count:
        logger.warning("only %d fresh %s problems exist outside the bundled splits", len(rows), domain)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR / "teacher")
    parser.add_argument("--student", type=Path, default=DATA_DIR / "model", help="model whose tokenizer is shared")
    parser.add_argument("--math", type=int, default=3000, help="fresh worked math examples")
    parser.add_argument("--code", type=int, default=300, help="fresh worked code examples (few exist)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(args.student)
    examples = seed_examples([DATA_DIR / "seed_math.jsonl", DATA_DIR / "seed_code.jsonl"])
    examples += fresh_worked_examples("math", args.math, f"{SEED}-teacher-math")
    examples += fresh_worked_examples("code", args.code, f"{SEED}-teacher-code")
    logger.info("teacher: %d worked examples", len(examples))

    model = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32)
    logger.info("teacher: %.2fM parameters", model.num_parameters() / 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        sft = SFTConfig(
            output_dir=tmp, num_train_epochs=args.epochs, learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size, lr_scheduler_type="cosine",
            warmup_steps=10, weight_decay=0.0, logging_steps=50, save_strategy="no",
            report_to=[], seed=SEED, use_cpu=True, bf16=False, max_length=256,
            dataloader_num_workers=0, disable_tqdm=True,
        )
        trainer = SFTTrainer(model=model, args=sft, train_dataset=Dataset.from_list(examples),
                             processing_class=tokenizer)
        result = trainer.train()
    logger.info("final train loss %.4f", result.training_loss)
    save_model(model, tokenizer, args.out)


if __name__ == "__main__":
    main()
