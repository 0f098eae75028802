"""The training stage in-process on the tiny model: tokenization, LoRA merge, the KD hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from sdp.stages.sample import encode_prompt, render_prompt
from sdp.stages.sft_set import tokenize_pairs
from sdp.stages.train import train

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
        "stats": str(tmp_path / "train_stats.json"),
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


def test_job_file_round_trips_and_names_bad_fields(tmp_path):
    from sdp.stages.train import TrainJob

    job = TrainJob.from_dict(_job(tmp_path, tmp_path / "model", launcher="accelerate", num_processes=2))
    path = job.to_json(tmp_path / "train.job.json")
    assert TrainJob.from_json(path) == job
    data = json.loads(path.read_text())
    for change, needle in [
        ({"epochs": 3}, "'epochs'"),
        ({"launcher": "slurm"}, "launcher"),
        ({"num_processes": 0}, "num_processes"),
        ({"dtype": "fp8"}, "dtype"),
    ]:
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(ValueError, match=needle) as err:
            TrainJob.from_json(path)
        assert str(path) in str(err.value)
    del data["output"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"missing field\(s\) \['output'\]"):
        TrainJob.from_json(path)


def test_sft_shards_load_memory_mapped_and_bad_lines_are_named(tmp_path):
    from sdp.stages.sft_set import load_sft

    shards = tmp_path / "sft"
    shards.mkdir()
    (shards / "00000.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS[:4]))
    (shards / "00001.jsonl").write_text("")  # a shard whose problems kept nothing
    (shards / "00002.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS[4:]))
    dataset = load_sft(str(shards), tmp_path / "cache")
    assert dataset["id"] == [p["id"] for p in PAIRS]
    assert dataset.cache_files and all(Path(f["filename"]).exists() for f in dataset.cache_files)
    listed = load_sft([str(shards / "00002.jsonl"), str(shards / "00000.jsonl")], tmp_path / "cache")
    assert listed["id"] == [p["id"] for p in PAIRS[4:] + PAIRS[:4]]

    bad = shards / "00003.jsonl"
    for text, needle in [
        ('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "compl\n', "00003.jsonl: line 2: not JSON"),
        ('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', "00003.jsonl: line 2: field 'completion'"),
    ]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=needle):
            load_sft(str(shards), tmp_path / f"cache-{len(text)}")
    bad.unlink()
    (shards / "00000.jsonl").write_text(json.dumps({"prompt": "a"}) + "\n")
    (shards / "00002.jsonl").unlink()
    with pytest.raises(ValueError, match=r"lack field\(s\) \['completion'\]"):
        load_sft(str(shards), tmp_path / "cache-missing")


def test_trains_on_a_directory_of_shards(tiny_model, tmp_path):
    job = _job(tmp_path, tiny_model)
    shards = tmp_path / "sft-shards"
    shards.mkdir()
    for i in range(0, 6, 2):
        (shards / f"{i:05d}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS[i : i + 2]))
    stats = train({**job, "sft_path": str(shards)})
    assert stats["examples"] == 6 and stats["steps"] == 2 and stats["processes"] == 1
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()
    assert not (tmp_path / "checkpoint" / "training_args.bin").exists()


def test_resume_skips_a_trainer_checkpoint_cut_short(tmp_path):
    from sdp.stages.train import _last_trainer_checkpoint

    for step, complete in ((2, True), (4, True), (6, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "model.safetensors").write_bytes(b"x")
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    assert _last_trainer_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert _last_trainer_checkpoint(tmp_path / "missing") is None
