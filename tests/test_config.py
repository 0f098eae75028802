"""Config parsing: YAML file, command-line overrides, pass-through dict merging, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdp.config import RoundConfig, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_default_yaml_is_the_embedded_default():
    assert (
        parse_config(["--config", str(REPO / "configs" / "default.yaml")])
        == parse_config([])
        == RoundConfig()
    )


def test_cli_overrides_yaml_and_merges_dicts(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text('name: x\nsampling: {n: 8, temperature: 0.5, stop: ["\\n\\n"]}\nrounds: 2\n')
    cfg = parse_config(
        [
            "--config",
            str(cfg_file),
            "--sampling",
            "{temperature: 0.9}",
            "--rounds",
            "4",
            "--lora",
            "{r: 4}",
            "--train_problems",
            "a.jsonl",
            "b.jsonl",
        ]
    )
    assert cfg.name == "x" and cfg.rounds == 4
    assert cfg.sampling == {"n": 8, "temperature": 0.9, "stop": ["\n\n"]}
    assert cfg.lora == {"r": 4}
    assert cfg.train_problems == ["a.jsonl", "b.jsonl"]
    assert parse_config(["--config", str(cfg_file), "--sampling", "null"]).sampling is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sampling", "[1, 2]"], "expected a mapping"),
        (["--rounds", "0"], "rounds must be >= 1"),
        (["--eval_k", "9"], "eval_k=9"),
        (["--kd", "{alpha: 0.5}"], "kd needs a teacher"),
        (["--kd", "{alpha: 0.5, beta: 1, teacher_model: t}"], r"kd: unknown key.*beta"),
        (["--shard_size", "0"], "shard_size must be >= 1"),
    ],
)
def test_bad_config_values(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_config(argv)
