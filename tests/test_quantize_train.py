"""The train stage with `quantize`: torchao QAT inside the round's own SFT stage, a torchao checkpoint out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torchao")

from sdp.stages.train import TrainJob, run_train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_stage_with_quantize_writes_a_torchao_checkpoint(tmp_path: Path) -> None:
    from sdp.distill.quantize import load_quantized

    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"prompt": f"{i}+1=?\n", "completion": f"{i}+1={i + 1}. \\boxed{{{i + 1}}}"}) + "\n"
                           for i in range(16)))
    job = TrainJob(init_model=str(REPO / "data/model"), sft_path=str(sft), output=str(tmp_path / "checkpoint"),
                   work_dir=str(tmp_path / "trainer"), stats=str(tmp_path / "stats.json"), seed=0,
                   sft_args={"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                             "save_strategy": "no", "report_to": "none", "logging_steps": 1},
                   kd={"alpha": 0.5, "temperature": 2.0, "teacher_model": str(REPO / "data/model")},
                   progress=False, quantize={"scheme": "int4_weight", "group_size": 32})
    stats = run_train(job, tmp_path / "train.job.json")

    assert stats["steps"] == 3
    assert stats["quantize"]["scheme"] == "int4_weight" and stats["checkpoint_bytes"] > 0
    config = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    full = sum(p.stat().st_size for p in (REPO / "data/model").glob("*.safetensors"))
    assert stats["checkpoint_bytes"] < full  # int4 weights are smaller than the float32 base
    model = load_quantized(tmp_path / "checkpoint")
    assert model.config.num_hidden_layers == json.loads((REPO / "data/model/config.json").read_text())["num_hidden_layers"]


def test_quantize_with_lora_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantize with lora"):
        TrainJob(init_model="m", sft_path="s", output="o", work_dir="w", stats="t", lora={"r": 4},
                 quantize={"scheme": "int4_weight"})
