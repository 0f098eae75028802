"""experiments.real_model's code path at a tiny size: both parts, one round, one seed, then resumed.

The real recipes (configs/recipes/real_math.yaml, real_rft.yaml) with the bundled tiny model (data/model,
no chat template, so no system prompt: its 256-token context) in place of SmolLM2, toy decoding lengths,
and GSM8K-format files of one-step sums (the tiny model has never seen GSM8K), so it runs in about two
minutes on the shared CPU machine instead of the real model's hours.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from experiments.real_model import main
from sdp.sources.problems import load_problems

REPO = Path(__file__).resolve().parents[1]
TINY = {"model": str(REPO / "data/model"), "system_prompt": None, "progress": False,
        "engine_args": {"enforce_eager": True, "max_model_len": 256, "max_num_seqs": 64, "dtype": "float32"},
        "vllm_env": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
        "sft": {"per_device_train_batch_size": 4, "learning_rate": 1.0e-3, "lr_scheduler_type": "constant",
                "num_train_epochs": 1, "max_steps": -1, "max_length": 256, "logging_steps": 1,
                "save_strategy": "no", "report_to": "none"}}


def _sum(i: int, name: str, thing: str) -> dict:
    a, b = 2 + i % 5, 1 + i % 3
    return {"question": f"{name} has {a} {thing}. Then {name} gets {b} more. How many {thing} does {name} have?",
            "answer": f"{a}+{b}=<<{a}+{b}={a + b}>>{a + b}.\n#### {a + b}"}


def _configs(tmp: Path) -> tuple[Path, Path]:
    gsm = tmp / "gsm8k"
    gsm.mkdir()
    # Other names and things in the test rows, so the 8-gram decontamination keeps the training rows.
    for name, rows in (("train", [_sum(i, "Cal", "apples") for i in range(12)]),
                       ("test", [_sum(i, "Dee", "shells") for i in range(8)])):
        (gsm / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = []
    for recipe, extra in (("real_math", {"train_problems": [str(REPO / "data/math_train.jsonl")],
                                         "eval_problems": [str(REPO / "data/math_eval.jsonl")],
                                         "sampling": {"n": 4, "temperature": 1.0, "max_tokens": 48},
                                         "eval_sampling": {"n": 1, "temperature": 0.0, "max_tokens": 48}}),
                          ("real_rft", {"train_problems": [{"path": str(gsm / "train.jsonl"), "format": "gsm8k"}],
                                        "eval_problems": [{"path": str(gsm / "test.jsonl"), "format": "gsm8k"}],
                                        "sampling": {"n": 4, "temperature": 1.0, "max_tokens": 48},
                                        "eval_sampling": {"n": 1, "temperature": 0.0, "max_tokens": 48}})):
        cfg = {**yaml.safe_load((REPO / f"configs/recipes/{recipe}.yaml").read_text()), **TINY, **extra}
        path = tmp / f"{recipe}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths.append(path)
    return paths[0], paths[1]


def _stamps(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("metrics.json")}


@pytest.mark.slow
def test_both_parts_run_tabulate_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    math_cfg, rft_cfg = _configs(tmp_path)
    out = tmp_path / "out"
    argv = ["--quick", "--out", str(out), "--math-config", str(math_cfg), "--rft-config", str(rft_cfg),
            "--gold", "6", "--gsm8k-test", "5", "--math-args",
            "--max_train_problems 6 --max_eval_problems 6 --budget_samples 24", "--rft-args", "--max_train_problems 4"]
    results = main(argv)
    printed = capsys.readouterr().out

    saved = json.loads((out / "results.json").read_text())
    assert saved["table"] == results["table"] and saved["seeds"] == [0] and saved["rounds"] == {"math": 1, "rft": 1}
    assert (out / "real_model.png").stat().st_size > 0
    for part in ("math", "rft"):
        summary = saved["summary"][part]
        assert [len(summary["pass1"][arm]) for arm in ("sdp", "control")] == [2, 2]
        # Round 0 is one starting model for both arms; each arm's round 1 is its own evaluation.
        assert summary["pass1"]["control"][0] == summary["pass1"]["sdp"][0]
        run = saved["runs"][part]["0"]
        assert run["control"][0]["steps"] == run["sdp"][1]["steps"], "the control must take the SDP arm's steps"
        assert all(0 <= s["mean"] <= 100 for arm in ("sdp", "control") for s in summary["pass1"][arm])
    assert "[math] bundled math held-out" in printed and "[rft] fixed GSM8K test subset" in printed
    assert "round-1 lead of SDP over control" in printed and "round-1 lead of RFT over gold-only" in printed

    # The gold SFT trained on the decontaminated gold rationales, ending in the box the prompt asks for.
    rft = out / "seed-0" / "rft"
    gold = load_problems([str(rft / "gold" / "gold_rationales.jsonl")])
    assert len(gold) == 6 and all(p["completion"].endswith(f"\\boxed{{{p['answer']}}}.") for p in gold)
    assert saved["runs"]["rft"]["0"]["gold"]["steps"] >= 1
    held_out = load_problems([saved["gsm8k_test_file"]])
    assert len(held_out) == 5 and not {p["id"] for p in held_out} & {p["id"] for p in gold}
    # Both RFT arms start from the gold-SFT checkpoint and are scored on the fixed test file.
    sdp_cfg = yaml.safe_load((rft / "sdp" / "config.yaml").read_text())
    assert sdp_cfg["model"] == str(rft / "gold" / "checkpoint")
    assert sdp_cfg["eval_problems"] == [saved["gsm8k_test_file"]]
    assert run["control"][0]["init_model"] == str(rft / "gold" / "checkpoint")

    # Re-running redoes nothing; losing one finished round redoes that round only.
    before = _stamps(out)
    assert main(argv)["table"] == results["table"]
    assert _stamps(out) == before
    lost = "seed-0/rft/control/round-1/metrics.json"
    (out / lost).unlink()
    again = main(argv)
    after = _stamps(out)
    assert {k for k in after if after[k] != before.get(k)} == {lost}
    assert again["summary"]["rft"]["pass1"] == results["summary"]["rft"]["pass1"]
