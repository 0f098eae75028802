"""Train the embedded default's tiny base model from scratch on the worked seed examples.

    python -m data.train_base                  # writes data/model/ (tokenizer + weights)
    python -m data.train_base --out /tmp/base  # somewhere else

Reproducible: the tokenizer is a byte-level BPE trained on the bundled problem text (digits kept as
single tokens so arithmetic stays learnable), the model a ~0.9M-parameter Llama initialised from a
fixed seed, trained with TRL's `SFTTrainer` on the seed sets in the project's plain prompt format
(`prompt + "\n"`, then the completion, then EOS; loss on the completion only). The intent is a base
trained until more seed epochs no longer help, so that what the self-distillation rounds add
comes from the model's own verified traces. Measured (docs/default.md): 30 epochs bring the loss
to ~0.01, yet further cosine cycles on the seed set still raise held-out accuracy a lot, so
`--extra-cycles` exists to train on until the seed-only control flattens.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

from sdp.stages.sample import PLAIN_PROMPT_TEMPLATE  # the sampler's prompt format, so base and rounds agree

DATA_DIR = Path(__file__).resolve().parent
EOS = "<|endoftext|>"
SEED = 1234

logger = logging.getLogger(__name__)


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE over the bundled text; every digit is its own token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=None,
        model_max_length=256,
    )


def seed_examples(files: list[Path], limit: int | None = None) -> list[dict]:
    rows = []
    for path in files:
        for i, rec in enumerate(read_jsonl(path)[:limit], 1):
            if "completion" not in rec:
                raise ValueError(f"{path}:{i}: seed record has no field 'completion'")
            rows.append({"prompt": PLAIN_PROMPT_TEMPLATE.format(prompt=rec["prompt"]),
                         "completion": rec["completion"]})
    return rows


def save_model(model, tokenizer, out: Path) -> None:
    """Save weights and tokenizer so that vLLM and transformers load them and stop at EOS."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True  # TRL turns it off for training; generation wants it
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    logger.info("saved %s", out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR / "model")
    parser.add_argument("--seed-files", type=Path, nargs="+",
                        default=[DATA_DIR / "seed_math.jsonl", DATA_DIR / "seed_code.jsonl"])
    parser.add_argument("--limit", type=int, default=None, help="use the first N of each seed file")
    parser.add_argument("--epochs", type=float, default=30, help="passes over the seed set")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--extra-cycles", type=int, default=1,
                        help="further cosine cycles over the seed set after the first (warm restarts)")
    parser.add_argument("--cycle-steps", type=int, default=300, help="optimizer steps per extra cycle")
    parser.add_argument("--cycle-lr", type=float, default=1e-3, help="peak learning rate of an extra cycle")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=448)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, set_seed
    from trl import SFTConfig, SFTTrainer

    # One thread: a 1M-parameter model gains little from more, and shared cores punish OMP spinning.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    set_seed(SEED)
    examples = seed_examples(args.seed_files, args.limit)
    # Seed text weighs 10x so merges favour the worked solutions' vocabulary, not just prompts.
    corpus = [r["prompt"] + r["completion"] for r in examples] * 10
    for name in ("math_train.jsonl", "code_train.jsonl"):  # pool prompts: vocabulary only
        corpus += [r["prompt"] + "\n" for r in read_jsonl(DATA_DIR / name)]
    tokenizer = build_tokenizer(corpus, args.vocab_size)

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.hidden // 32,
        num_key_value_heads=args.hidden // 32, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    logger.info("model: %.2fM parameters, vocab %d", model.num_parameters() / 1e6, len(tokenizer))

    # Cycle 0 learns the seed set; extra cycles (warm restarts) keep improving held-out accuracy
    # long after the training loss is ~0, so the shipped base gets them until that stops.
    cycles = [dict(num_train_epochs=args.epochs, learning_rate=args.lr, warmup_steps=50)]
    cycles += [dict(max_steps=args.cycle_steps, learning_rate=args.cycle_lr, warmup_steps=0)] * args.extra_cycles
    with tempfile.TemporaryDirectory() as tmp:
        for i, cycle in enumerate(cycles):
            sft = SFTConfig(
                output_dir=tmp, per_device_train_batch_size=args.batch_size, lr_scheduler_type="cosine",
                weight_decay=0.0, logging_steps=50, save_strategy="no", report_to=[], seed=SEED + i,
                use_cpu=True, bf16=False, max_length=256, dataloader_num_workers=0, disable_tqdm=True, **cycle,
            )
            trainer = SFTTrainer(model=model, args=sft, train_dataset=Dataset.from_list(examples),
                                 processing_class=tokenizer)
            result = trainer.train()
            logger.info("cycle %d: final train loss %.4f", i, result.training_loss)
    save_model(model, tokenizer, args.out)


if __name__ == "__main__":
    main()
