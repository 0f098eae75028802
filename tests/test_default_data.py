"""The embedded default's data and model: deterministic generators, valid records, a loadable model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from data import generate
from sdp.sources.problems import load_problems

DATA = Path(generate.__file__).resolve().parent
MODEL = DATA / "model"
PROBLEM_FILES = [DATA / name for name in generate.SPLITS]


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


_DIGEST = (
    "import hashlib, json\nfrom data import generate\n"
    "print(hashlib.sha256(json.dumps(generate.build(), sort_keys=True).encode()).hexdigest())"
)


def test_generator_is_deterministic_across_processes():
    """Fresh interpreters with different hash seeds (set and dict orders) build the same data."""
    import hashlib
    import os
    import subprocess
    import sys

    root = Path(generate.__file__).resolve().parent.parent
    digests = {
        subprocess.run([sys.executable, "-c", _DIGEST], capture_output=True, text=True, check=True, cwd=root,
                       env={**os.environ, "PYTHONHASHSEED": seed}, timeout=600).stdout.strip()  # fmt: skip
        for seed in ("0", "12345")
    }
    here = hashlib.sha256(json.dumps(generate.build(), sort_keys=True).encode()).hexdigest()
    assert digests == {here}


def test_checked_in_files_match_the_generator(tmp_path):
    assert generate.main(["--check"]) == 0
    (tmp_path / "math_eval.jsonl").write_text("stale\n")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", list(generate.SPLITS))
def test_files_pass_the_data_contract(name):
    domain, count, worked = generate.SPLITS[name]
    problems = load_problems([str(DATA / name)])
    assert len(problems) == count
    assert {p["domain"] for p in problems} == {domain}
    assert all(("completion" in p) == worked for p in problems)


def test_ids_unique_and_held_out_problems_unseen():
    splits = {name: _rows(name) for name in generate.SPLITS}
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids))
    for domain in ("math", "code"):
        held_out = {r["prompt"] for r in splits[f"{domain}_eval.jsonl"]}
        for name in (f"{domain}_train.jsonl", f"seed_{domain}.jsonl"):
            assert not held_out & {r["prompt"] for r in splits[name]}, name


def test_code_tasks_differ_from_held_out_beyond_the_function_name():
    def task(prompt: str) -> str:
        return re.sub(r"\b[fgh]\(", "f(", prompt)

    held_out = {task(r["prompt"]) for r in _rows("code_eval.jsonl")}
    assert not held_out & {task(r["prompt"]) for r in _rows("code_train.jsonl") + _rows("seed_code.jsonl")}


def test_seed_math_completions_end_with_the_gold_answer():
    from verifiers.registry import get_verifier

    verifier = get_verifier("math")
    for row in _rows("seed_math.jsonl")[:100]:
        assert row["completion"].endswith(f"\\boxed{{{row['answer']}}}")
        assert verifier.verify(row, row["completion"]).ok is True, row
    wrong = dict(_rows("seed_math.jsonl")[0])
    assert verifier.verify(wrong, wrong["completion"].replace("boxed{", "boxed{1")).ok is False


@pytest.mark.slow
def test_seed_code_completions_pass_their_hidden_tests_in_the_sandbox():
    from sdp.stages.verify import verify_records

    rows = _rows("seed_code.jsonl")[:40]
    broken = [dict(r, completion=r["completion"].replace("return ", "return 1+")) for r in rows[:10]]
    verdicts = verify_records(rows + broken, workers=2, progress=False)
    assert [v["verdict"]["ok"] for v in verdicts] == [True] * 40 + [False] * 10


def test_model_is_small_and_loads_from_disk():
    from transformers import AutoConfig, AutoTokenizer

    size = sum(p.stat().st_size for p in MODEL.iterdir())
    assert size <= 20 * 2**20
    config = AutoConfig.from_pretrained(MODEL)
    assert config.model_type in ("llama", "qwen2")
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    assert tokenizer.chat_template is None  # so sdp uses the plain `prompt + "\n"` format
    assert tokenizer.eos_token_id == config.eos_token_id
    text = "Write f so that f(2) = 5 and f(3) = 7.\n7-5=2.\n```python\ndef f(x):\n    return 2*x+1\n```"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert all(len(tokenizer.decode([i])) == 1 for i in tokenizer("1234567890")["input_ids"])  # one digit per token
    longest = max(len(tokenizer(r["prompt"] + "\n" + r["completion"])["input_ids"]) for r in
                  _rows("seed_math.jsonl") + _rows("seed_code.jsonl"))
    assert longest < config.max_position_embeddings


def test_base_model_reproduces_its_seed_set_but_not_the_held_out_set():
    """Trained to convergence on the worked examples; weak, not hopeless, on unseen problems."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verifiers.registry import get_verifier

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(MODEL).eval()
    verifier = get_verifier("math")

    def greedy_accuracy(rows: list[dict]) -> float:
        enc = tokenizer([r["prompt"] + "\n" for r in rows], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=48, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return sum(verifier.verify(r, t).ok is True for r, t in zip(rows, texts)) / len(rows)

    assert greedy_accuracy(_rows("seed_math.jsonl")[:64]) >= 0.9
    held_out = greedy_accuracy(_rows("math_eval.jsonl")[:64])
    assert 0.02 <= held_out <= 0.8
