"""The run summary: table, summary.json and a plot of held-out accuracy beside train solve rates."""

from __future__ import annotations

import json
from pathlib import Path

from sdp.stages.summary import solve_rates, write_summary


def _round(root: Path, k: int, math: float, rates: dict[str, float] | None) -> dict:
    rdir = root / f"round-{k}"
    rdir.mkdir(parents=True)
    metrics = {"round": k, "eval": {"math": {"pass@1": math, "pass@k": math, "maj@k": math, "k": 4}}}
    (rdir / "metrics.json").write_text(json.dumps(metrics))
    if rates is not None:
        (rdir / "solve_rates.json").write_text(json.dumps(rates))
    return metrics


def test_summary_reads_each_rounds_solve_rates_and_draws_both_panels(tmp_path: Path) -> None:
    rows = [_round(tmp_path, 0, 0.25, None), _round(tmp_path, 1, 0.5, {"a": 0.0, "b": 0.5}),
            _round(tmp_path, 2, 0.75, {"a": 0.25, "b": 1.0})]
    assert solve_rates(tmp_path, rows) == {1: [0.0, 0.5], 2: [0.25, 1.0]}
    table = write_summary(tmp_path)
    assert "50.0" in table and "75.0" in table
    png = tmp_path / "summary" / "accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    width = imread(str(png)).shape[1]
    write_summary_without_rates = tmp_path / "no-rates"
    _round(write_summary_without_rates, 0, 0.25, None)
    write_summary(write_summary_without_rates)
    narrow = imread(str(write_summary_without_rates / "summary" / "accuracy.png")).shape[1]
    assert width > narrow  # the solve-rate histogram is drawn beside the accuracy curve


def test_the_table_shows_each_rounds_luck_figures(tmp_path: Path) -> None:
    _round(tmp_path, 0, 0.25, None)
    metrics = _round(tmp_path, 1, 0.5, None)
    metrics["luck"] = {"shuffled_pass_rate": 0.0390625, "kept_false_step": 1, "kept_checked": 3,
                       "distinct_answers_per_problem": 2.7031}
    (tmp_path / "round-1" / "metrics.json").write_text(json.dumps(metrics))
    lines = write_summary(tmp_path).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    base, first = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:4])
    cells = dict(zip(header, first, strict=True))
    assert (cells["shuffled pass"], cells["kept false step"], cells["answers/problem"]) == ("3.9", "1/3", "2.70")
    assert dict(zip(header, base, strict=True))["shuffled pass"] == "-"
