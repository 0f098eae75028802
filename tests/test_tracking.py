"""Round tracking, offline: what is logged to TensorBoard, W&B (offline) and MLflow (file store) reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdp.tracking import RoundTracker, check_report_to, flatten_metrics, log_run, main, mlflow_tracking_uri


def metrics_for(k: int) -> dict:
    """A round's metrics.json as `sdp.round` writes it (round 0: the baseline has only eval and timings)."""
    scores = {
        d: {"problems": 4, "unverifiable_problems": 0, "k": 4, "pass@1": 0.1 * k + base, "pass@k": 0.2 * k + base,
            "maj@k": None if d == "code" else 0.05 * k}
        for d, base in (("all", 0.2), ("code", 0.1), ("math", 0.3))
    }  # fmt: skip
    if k == 0:
        return {"round": 0, "model": "data/model", "eval": scores, "timings": {"evaluate": 3.5}, "peak_rss_mb": 900.0}
    return {
        "round": k, "model": f"runs/x/round-{k}/checkpoint", "sampler_model": "data/model", "init_from": "previous",
        "problems": 48, "samples": 192, "verified_ok": 10 * k, "wrong": 192 - 10 * k, "unverifiable": 0,
        "duplicates": 1, "kept": 9 * k, "problems_solved": 5 * k, "train_pass_rate": 0.05 * k, "train_loss": 1.5 / k,
        "eval": scores, "timings": {"sample": 14.7, "verify": 1.4, "select": 4.0, "train": 7.2, "evaluate": 9.6},
        "peak_rss_mb": 1200.0,
    }  # fmt: skip


def make_run(tmp_path: Path, rounds: int = 3) -> Path:
    run = tmp_path / "runs" / "demo"
    for k in range(rounds):
        (run / f"round-{k}").mkdir(parents=True)
        (run / f"round-{k}" / "metrics.json").write_text(json.dumps(metrics_for(k)))
    return run


def test_flatten_keeps_numbers_with_paths():
    flat = flatten_metrics(metrics_for(2))
    assert flat["eval/math/pass@1"] == pytest.approx(0.5) and flat["kept"] == 18 and flat["timings/sample"] == 14.7
    assert flat["train_pass_rate"] == pytest.approx(0.1)
    assert "round" not in flat and "model" not in flat and "eval/code/maj@k" not in flat  # step, strings, None


def test_report_to_names_are_checked():
    assert check_report_to(None) == [] and check_report_to("none") == [] and check_report_to([]) == []
    with pytest.raises(ValueError, match="unknown tracker"):
        check_report_to(["tensorbord"])


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    run = make_run(tmp_path)
    assert log_run(["tensorboard"], run, config={"model": "data/model"}) == 3
    scalars = _scalars(run / "tensorboard")
    assert [(s, round(v, 6)) for s, v in scalars["eval/math/pass@1"]] == [(0, 0.3), (1, 0.4), (2, 0.5)]
    assert scalars["kept"] == [(1, 9.0), (2, 18.0)]  # the baseline has no training counts
    assert [s for s, _ in scalars["timings/evaluate"]] == [0, 1, 2]
    assert scalars["train_pass_rate"][-1][1] == pytest.approx(0.1)


def test_resumed_job_appends_rounds(tmp_path):
    """Round by round, from separate tracker sessions (a resumed job), as the round loop logs."""
    pytest.importorskip("tensorboard")
    run = tmp_path / "runs" / "resumed"
    for k in (0, 1):
        with RoundTracker(["tensorboard"], run) as tracker:
            tracker.log_round(metrics_for(k))
    assert [s for s, _ in _scalars(run / "tensorboard")["eval/all/pass@1"]] == [0, 1]


def test_mlflow_store_in_the_run_dir_reads_back(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = make_run(tmp_path, rounds=2)
    with RoundTracker(["mlflow"], run, config={"model": "data/model", "sampling": {"n": 4}}) as tracker:
        tracker.log_round(metrics_for(0))
    with RoundTracker(["mlflow"], run) as tracker:  # resumed: same MLflow run
        tracker.log_round(metrics_for(1))
    from mlflow.tracking import MlflowClient

    state = json.loads((run / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_tracking_uri(run))
    history = client.get_metric_history(state["mlflow_run_id"], "eval/math/pass_at_1")
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 0.3), (1, 0.4)]
    params = client.get_run(state["mlflow_run_id"]).data.params
    assert params["model"] == '"data/model"' and params["sampling.n"] == "4"


def test_wandb_offline_reads_back(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = make_run(tmp_path, rounds=3)
    assert main([str(run), "--report_to", "wandb"]) == 0
    import wandb

    wandb.teardown()  # the W&B service writes the run file; its exit is when the file is complete
    state = json.loads((run / "tracking.json").read_text())
    (run_file,) = (run / "wandb").glob(f"offline-run-*-{state['wandb_run_id']}/run-{state['wandb_run_id']}.wandb")
    history = _wandb_history(run_file)
    assert [(h["_step"], round(h["eval/math/pass@1"], 6)) for h in history] == [(0, 0.3), (1, 0.4), (2, 0.5)]
    assert [h["round"] for h in history] == [0, 1, 2] and history[2]["kept"] == 18


def _wandb_history(path: Path) -> list[dict]:
    """History rows of an offline W&B run file: a LevelDB-style log of `Record` protos after a 7-byte header."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", header
    while pos + header <= len(data):
        if block - pos % block < header:  # too little room left in the block for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        pending += data[pos + header : pos + header + length]
        pos += header + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            records.append(pending)
            pending = b""
    rows = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows
