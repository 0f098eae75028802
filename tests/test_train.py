"""The training stage in-process on the tiny model: tokenization, LoRA merge, the KD hook."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from sdp.stages.sample import encode_prompt, render_prompt
from sdp.stages.train import tokenize_pairs, train

PAIRS = [
    {"id": f"p{i}", "prompt": f"Say {i}\n", "completion": f"I say {i}. The answer is \\boxed{{{i}}}."}
    for i in range(6)
]


def test_tokenize_pairs_masks_the_prompt_and_appends_eos(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    cols = tokenize_pairs(tok, PAIRS)
    for pair, ids, labels in zip(PAIRS, cols["input_ids"], cols["labels"], strict=False):
        prompt_ids = encode_prompt(tok, render_prompt(tok, pair["prompt"][:-1]))
        assert ids[: len(prompt_ids)] == prompt_ids  # exactly what the sampler fed the model
        assert labels[: len(prompt_ids)] == [-100] * len(prompt_ids)
        assert labels[len(prompt_ids) :] == ids[len(prompt_ids) :]
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[len(prompt_ids) : -1]) == pair["completion"]
    full = tokenize_pairs(tok, PAIRS[:1], completion_only=False)
    assert full["labels"] == full["input_ids"]


def _job(tmp_path: Path, model: Path, **extra) -> dict:
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return {
        "init_model": str(model),
        "sft_path": str(sft),
        "output": str(tmp_path / "checkpoint"),
        "work_dir": str(tmp_path / "trainer"),
        "seed": 0,
        "progress": False,
        "sft_args": {
            "num_train_epochs": 1,
            "per_device_train_batch_size": 3,
            "report_to": "none",
            "save_strategy": "no",
            "max_length": 128,
        },
        **extra,
    }


def test_lora_is_merged_into_a_plain_checkpoint(tiny_model, tmp_path):
    stats = train(
        _job(tmp_path, tiny_model, lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    )
    assert stats["examples"] == 6 and stats["steps"] == 2
    files = {p.name for p in (tmp_path / "checkpoint").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    assert not any("lora" in k for k in weights)


def test_kd_config_builds_the_distillation_trainer(tiny_model, tmp_path, monkeypatch):
    import sdp.distill.kd

    built = {}
    original = sdp.distill.kd.KDSFTTrainer.__init__

    def spy(self, *args, **kwargs):
        built.update(
            alpha=kwargs["alpha"], temperature=kwargs["temperature"], teacher=kwargs["teacher_model"]
        )
        original(self, *args, **kwargs)

    monkeypatch.setattr(sdp.distill.kd.KDSFTTrainer, "__init__", spy)
    stats = train(
        _job(tmp_path, tiny_model, kd={"alpha": 0.7, "temperature": 2.0, "teacher_model": str(tiny_model)})
    )
    assert built == {"alpha": 0.7, "temperature": 2.0, "teacher": str(tiny_model)}
    assert stats["steps"] == 2 and (tmp_path / "checkpoint" / "model.safetensors").exists()
