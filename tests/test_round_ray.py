"""`python -m sdp.round --executor ray --replicas 2` writes the same files as the local executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import round_args
from tests.test_round import SHARD_SIZE, run_round, stage_files

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_a_round_on_ray_with_two_replicas_matches_the_local_executor(tiny_model, problem_files, tmp_path: Path):
    local = round_args(tiny_model, problem_files, tmp_path, "local", "--shard_size", SHARD_SIZE)
    on_ray = round_args(tiny_model, problem_files, tmp_path, "ray", "--shard_size", SHARD_SIZE,
                        "--executor", "ray", "--replicas", "2")
    run_round(local)
    run_round(on_ray)

    ours, theirs = stage_files(tmp_path / "ray" / "round-1"), stage_files(tmp_path / "local" / "round-1")
    assert ours.keys() == theirs.keys() and any(k.startswith("samples/") for k in ours)
    assert [k for k in ours if ours[k] != theirs[k]] == []
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["round-1/sample"]["samples"] > 0
    metrics = [json.loads((tmp_path / n / "round-1" / "metrics.json").read_text()) for n in ("ray", "local")]
    assert metrics[0]["eval"] == metrics[1]["eval"] and metrics[0]["kept"] == metrics[1]["kept"]
