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


def test_math_verify_section_is_checked_at_start_naming_the_field(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("math_verify: {step_chek: flag}\n")
    with pytest.raises(ValueError, match=r"math_verify\.step_chek: not a field of verifiers\.MathVerifyConfig "
                                         r"\(did you mean step_check\?\)"):
        parse_config(["--config", str(typo)])
    with pytest.raises(ValueError, match=r"math_verify\.step_check: expected one of 'reject', 'flag', 'off', got 'no'"):
        parse_config(["--math_verify", "{step_check: 'no'}"])
    with pytest.raises(ValueError, match=r"math_verify: MathVerifyConfig\.rel_tol must be in"):
        parse_config(["--math_verify", "{rel_tol: 0.5}"])
    good = tmp_path / "good.yaml"
    good.write_text("math_verify: {step_check: off}\nluck_check: false\n")  # YAML reads a bare off as false
    cfg = parse_config(["--config", str(good), "--math_verify", "{convert_units: false}"])
    assert cfg.math_verify == {"step_check": "off", "convert_units": False} and cfg.luck_check is False
    assert RoundConfig().math_verify is None and RoundConfig().luck_check is True
