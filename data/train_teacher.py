"""Train the embedded default's teacher: the student's base trained further on many more worked examples.

    python -m data.train_teacher                 # writes data/teacher/ (not committed, reproducible)
    python -m data.train_teacher --out /tmp/teacher --student /tmp/base
    python -m data.train_teacher --size big     # writes data/teacher-big/: wider and deeper, grown from the student

`--size same` (the default) starts from the student's base model (`--student`, default data/model):
"better trained", not larger. `--size big` builds a Llama wider and deeper than the student
(`--hidden`, `--layers`; default 192 x 6 against data/model's 128 x 4, ~3x the parameters), for
hidden-state distillation across a real size gap. `--init grow` (default) starts it as the
student's exact function (`grow_model`) and trains all of it further; `--init scratch` starts from
a random initialisation, which 3 epochs (394 steps, lr 3e-3) leave far weaker than the
student on 2 CPU cores (188 of 2000 pool samples verified against the student's 882, at 71f390f).
Either way the teacher keeps the student's tokenizer, so the two share every token id and
soft-label distillation can compare their distributions. Its worked examples are
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


def big_model(student: Path, hidden: int, layers: int):
    """A freshly initialised Llama like the student's (same vocabulary, head size, ids), wider and deeper."""
    import torch
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    base = AutoConfig.from_pretrained(student)
    head_dim = base.hidden_size // base.num_attention_heads
    if hidden % head_dim:
        raise ValueError(f"--hidden {hidden} must be a multiple of the student's head size {head_dim}")
    if hidden <= base.hidden_size or layers <= base.num_hidden_layers:
        logger.warning("teacher %dx%d is not wider and deeper than the student %dx%d",
                       hidden, layers, base.hidden_size, base.num_hidden_layers)
    config = LlamaConfig(
        vocab_size=base.vocab_size, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim, num_key_value_heads=hidden // head_dim,
        max_position_embeddings=base.max_position_embeddings, tie_word_embeddings=base.tie_word_embeddings,
        bos_token_id=base.bos_token_id, eos_token_id=base.eos_token_id, pad_token_id=base.pad_token_id,
    )
    torch.manual_seed(SEED)
    return LlamaForCausalLM(config)


def _layer_slots(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer index of each student layer, spread evenly (first to first, last to last)."""
    if student_layers == 1:
        return [0]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def grow_model(student: Path, hidden: int, layers: int):
    """`big_model`'s teacher, initialised so that it computes exactly the student's function (Net2Net-style).

    The student's weights fill the top-left block of every matrix; the extra hidden dimensions of the
    residual stream start at zero and stay zero at first because nothing writes to them (the rows of
    o_proj and down_proj for those dimensions are zero); new heads and MLP units read the stream but
    write nothing (their columns of o_proj / down_proj are zero); new layers are inserted as identities
    (o_proj = down_proj = 0). RMSNorm weights are scaled by sqrt(h/H) since the norm now averages over H
    dimensions of which H-h are zero. Everything else keeps `big_model`'s random initialisation, so
    training can use the extra capacity. Equal to the student up to rounding and RMSNorm's eps.
    """
    import torch
    from transformers import AutoModelForCausalLM

    small = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    big = big_model(student, hidden, layers)
    sc, bc = small.config, big.config
    h, d = sc.hidden_size, sc.hidden_size // sc.num_attention_heads
    inter = sc.intermediate_size
    if sc.num_key_value_heads != sc.num_attention_heads:
        raise ValueError(f"{student}: growing needs a student without grouped-query attention")
    if hidden < h or layers < sc.num_hidden_layers or bc.intermediate_size < inter:
        raise ValueError(f"--hidden {hidden} / --layers {layers} must not be smaller than the student's {h} / "
                         f"{sc.num_hidden_layers}")
    norm_scale = (h / hidden) ** 0.5
    s_state = small.state_dict()
    slots = _layer_slots(sc.num_hidden_layers, layers)
    with torch.no_grad():
        emb = big.model.embed_tokens.weight
        emb[:, :h] = s_state["model.embed_tokens.weight"]
        emb[:, h:] = 0
        if not bc.tie_word_embeddings:
            big.lm_head.weight[:, :h] = s_state["lm_head.weight"]
            big.lm_head.weight[:, h:] = 0
        big.model.norm.weight.copy_(norm_scale)
        big.model.norm.weight[:h] = s_state["model.norm.weight"] * norm_scale
        for j, layer in enumerate(big.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            attn.o_proj.weight.zero_()
            mlp.down_proj.weight.zero_()
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight.fill_(norm_scale)
            if j not in slots:
                continue  # a new layer: an identity (its residual writes are zero)
            pre = f"model.layers.{slots.index(j)}."
            for name in ("q_proj", "k_proj", "v_proj"):
                getattr(attn, name).weight[: s_state[pre + f"self_attn.{name}.weight"].shape[0], :h] = (
                    s_state[pre + f"self_attn.{name}.weight"])
            attn.o_proj.weight[:h, : sc.num_attention_heads * d] = s_state[pre + "self_attn.o_proj.weight"]
            for name in ("gate_proj", "up_proj"):
                getattr(mlp, name).weight[:inter, :h] = s_state[pre + f"mlp.{name}.weight"]
            mlp.down_proj.weight[:h, :inter] = s_state[pre + "mlp.down_proj.weight"]
            layer.input_layernorm.weight[:h] = s_state[pre + "input_layernorm.weight"] * norm_scale
            layer.post_attention_layernorm.weight[:h] = s_state[pre + "post_attention_layernorm.weight"] * norm_scale
    return big


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["same", "big"], default="same",
                        help="same: continue the student's base; big: a wider, deeper model (see --init)")
    parser.add_argument("--out", type=Path, default=None, help="default data/teacher (same), data/teacher-big (big)")
    parser.add_argument("--student", type=Path, default=DATA_DIR / "model", help="model whose tokenizer is shared")
    parser.add_argument("--math", type=int, default=3000, help="fresh worked math examples")
    parser.add_argument("--code", type=int, default=300, help="fresh worked code examples (few exist)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=192, help="--size big: hidden size (student: 128)")
    parser.add_argument("--layers", type=int, default=6, help="--size big: decoder layers (student: 4)")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--init", choices=["grow", "scratch"], default="grow",
                        help="--size big: grow the student into the bigger shape (starts as the student's "
                        "function, see grow_model) or a random initialisation")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = DATA_DIR / ("teacher" if args.size == "same" else "teacher-big")
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

    if args.size == "same":
        model = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32)
    elif args.init == "grow":
        model = grow_model(args.student, args.hidden, args.layers)
    else:
        model = big_model(args.student, args.hidden, args.layers)
    logger.info("teacher: %.2fM parameters", model.num_parameters() / 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        sft = SFTConfig(
            output_dir=tmp, num_train_epochs=args.epochs, learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size, lr_scheduler_type="cosine",
            warmup_steps=args.warmup_steps, weight_decay=0.0, logging_steps=50, save_strategy="no",
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
