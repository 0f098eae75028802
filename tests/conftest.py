"""Session-wide fixtures: a tiny random Llama built by the tests, problem files, one vLLM engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Small jobs on a shared 2-core machine: one thread each, and vLLM's engine core in-process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NEEDLE = "tests.plugins:NeedleVerifier"
TINY_ENGINE_ARGS = {
    "enforce_eager": True,
    "enable_chunked_prefill": False,
    "max_model_len": 128,
    "max_num_seqs": 64,
    "dtype": "float32",
}


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    """A random ~170k-parameter Llama and a byte-level BPE tokenizer (no chat template), saved in `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(
        ["Add 2 and 3. The answer is \\boxed{5}.", "def f(x):\n    return x + 1\n"] * 20, trainer
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|eos|>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,  # head_dim 32: vLLM CPU minimum
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_wider_teacher(tiny_model: Path, out: Path) -> Path:
    """A teacher wider and deeper (96 x 3) than the tiny student, on its tokenizer (hidden-state KD needs a gap)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(3)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=3,
        num_key_value_heads=1, max_position_embeddings=128, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def needle_problems(prefix: str, count: int, needles: str = "aeiou") -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i}",
            "domain": NEEDLE,
            "prompt": f"Say something with {needles[i % len(needles)]}",
            "needle": needles[i % len(needles)],
        }
        for i in range(count)
    ]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def problem_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training and held-out sets mixing the needle plugin domain with real math problems."""
    d = tmp_path_factory.mktemp("problems")
    math_train = [
        {"id": f"m-{i}", "domain": "math", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)}
        for i in range(4)
    ]
    math_eval = [
        {"id": f"me-{i}", "domain": "math", "prompt": f"What is {i} * 3?", "answer": str(3 * i)}
        for i in range(2)
    ]
    # One training problem without a needle: every sample of it is unverifiable and must be dropped.
    train = (
        needle_problems("t", 9) + [{"id": "t-nogold", "domain": NEEDLE, "prompt": "Anything"}] + math_train
    )
    return {
        "train": write_jsonl(d / "train.jsonl", train),
        "eval": write_jsonl(d / "eval.jsonl", needle_problems("e", 4, "xyz") + math_eval),
    }


def round_args(model: Path, problems: dict[str, Path], out: Path, name: str, *extra: str) -> list[str]:
    """Command-line arguments of a small, fast round on the tiny model."""
    return [
        "--name",
        name,
        "--output_dir",
        str(out),
        "--model",
        str(model),
        "--train_problems",
        str(problems["train"]),
        "--eval_problems",
        str(problems["eval"]),
        "--max_train_problems",
        "1000",
        "--max_eval_problems",
        "1000",
        "--engine_args",
        json.dumps(TINY_ENGINE_ARGS),
        "--sampling",
        "{n: 4, temperature: 1.0, max_tokens: 24}",
        "--eval_sampling",
        "{n: 4, temperature: 1.0, max_tokens: 24}",
        "--sft",
        "{max_steps: -1, num_train_epochs: 2, per_device_train_batch_size: 4, max_length: 128, logging_steps: 1, lr_scheduler_type: constant}",
        "--verify_workers",
        "1",
        "--progress",
        "false",
        "--rounds",
        "1",
        # The random tiny model has not learnt to stop: every completion ends at max_tokens. These
        # rounds test the plumbing, so its cut completions are verified (the default drops them).
        "--keep_truncated",
        "true",
        # Fixed n per problem: the plumbing tests count samples as n x problems (the adaptive
        # default has its own tests in test_budget.py and test_rationalize.py).
        "--sampling_budget",
        "fixed",
        *extra,
    ]


@pytest.fixture(scope="session")
def vllm_engine(tiny_model: Path):
    """One in-process vLLM engine on the tiny model for the whole session."""
    pytest.importorskip("vllm")
    from sdp.stages.engine import build_llm

    return build_llm(str(tiny_model), TINY_ENGINE_ARGS, seed=0)
