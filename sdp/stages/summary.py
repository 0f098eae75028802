"""`runs/<name>/summary/`: a table (Markdown + JSON) and a PNG plot of held-out accuracy per round.

Built from the rounds' `metrics.json` files only, so `python -m sdp.stages.summary runs/<name>` can
redraw it at any time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sdp.rundir import atomic_write_json, atomic_write_text


def load_metrics(run_root: Path) -> list[dict[str, Any]]:
    rows = []
    for path in run_root.glob("round-*/metrics.json"):
        rows.append(json.loads(path.read_text()))
    return sorted(rows, key=lambda m: m["round"])


# Why a maj@k cell can be empty (`sdp.stages.evaluate.eval_metrics`).
MAJ_NOTE = ("maj@k -: no majority vote, as no sample of the domain gave a final answer (code's verifier extracts "
            "none; a math sample without a \\boxed{} or final number gives none).")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _luck_cells(luck: dict[str, Any] | None) -> list[str]:
    """The luck pass's columns (`sdp.stages.luck`): shuffled-gold pass %, kept traces with a false step, answers."""
    if not luck:
        return ["-", "-", "-"]
    answers = luck.get("distinct_answers_per_problem")
    return [
        _pct(luck.get("shuffled_pass_rate")),
        f"{luck['kept_false_step']}/{luck['kept_checked']}",
        "-" if answers is None else f"{answers:.2f}",
    ]


def render_table(rows: list[dict[str, Any]]) -> str:
    domains = sorted({d for m in rows for d in m.get("eval", {})}, key=lambda d: (d == "all", d))
    header = ["round", "samples", "verified", "kept", "train pass", "shuffled pass", "kept false step",
              "answers/problem", "train loss"]
    for d in domains:
        k = next((m["eval"][d]["k"] for m in rows if d in m.get("eval", {})), "k")
        header += [f"{d} pass@1", f"{d} pass@{k}", f"{d} maj@{k}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in rows:
        loss = m.get("train_loss")
        cells = [
            str(m["round"]) + (" (base)" if m["round"] == 0 else ""),
            str(m.get("samples", "-")),
            str(m.get("verified_ok", "-")),
            str(m.get("kept", "-")),
            _pct(m.get("train_pass_rate")),
            *_luck_cells(m.get("luck")),
            "-" if loss is None else f"{loss:.4f}",
        ]
        for d in domains:
            s = m.get("eval", {}).get(d)
            cells += [_pct(s["pass@1"]), _pct(s["pass@k"]), _pct(s["maj@k"])] if s else ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    if any(s.get("maj@k") is None for m in rows for s in m.get("eval", {}).values()):
        lines.append(f"\n{MAJ_NOTE}")
    return "\n".join(lines) + "\n"


def solve_rates(run_root: Path, rows: list[dict[str, Any]]) -> dict[int, list[float]]:
    """Each training round's per-problem solve rates (round-<k>/solve_rates.json)."""
    found = {}
    for m in rows:
        path = run_root / f"round-{m['round']}" / "solve_rates.json"
        if m["round"] >= 1 and path.exists():
            found[m["round"]] = [float(v) for v in json.loads(path.read_text()).values()]
    return found


def accuracy_figure(rows: list[dict[str, Any]], rates: dict[int, list[float]] | None = None) -> Any:
    """The matplotlib figure of held-out pass@1 (%) per round; beside it, when given, the histogram of train
    solve rates per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = sorted({d for m in rows for d in m.get("eval", {})}, key=lambda d: (d == "all", d))
    if rates:
        fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4))
        bins = [i / 10 for i in range(11)]
        for k, values in sorted(rates.items()):
            hist.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"round {k}")
        hist.set_xlabel("train solve rate (verified / sampled, per problem)")
        hist.set_ylabel("problems")
        hist.legend()
        hist.grid(alpha=0.3)
    else:
        fig, ax = plt.subplots(figsize=(6, 4))
    for d in domains:
        pts = [
            (m["round"], m["eval"][d]["pass@1"])
            for m in rows
            if m.get("eval", {}).get(d, {}).get("pass@1") is not None
        ]
        if pts:
            # In percent, as in the table beside it.
            ax.plot(*zip(*[(k, 100 * p) for k, p in pts], strict=False), marker="o", label=f"{d} pass@1",
                    linestyle="--" if d == "all" else "-")
    ax.set_xlabel("round (0 = base model)")
    ax.set_ylabel("held-out pass@1 (%)")
    top = max((m["eval"][d]["pass@1"] or 0 for m in rows for d in m.get("eval", {})), default=0)
    ax.set_ylim(0, min(100.0, 100 * top * 1.25 + 2))  # low accuracies stay readable
    ax.set_xticks([m["round"] for m in rows])
    ax.grid(alpha=0.3)
    if domains:
        ax.legend()
    fig.tight_layout()
    return fig


def plot(rows: list[dict[str, Any]], path: Path, rates: dict[int, list[float]] | None = None) -> None:
    """Write `accuracy_figure` to `path` (atomically)."""
    import matplotlib.pyplot as plt

    fig = accuracy_figure(rows, rates)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def write_summary(run_root: str | Path) -> str:
    """Write table.md, summary.json and accuracy.png under `<run>/summary/`; return the table."""
    run_root = Path(run_root)
    rows = load_metrics(run_root)
    out = run_root / "summary"
    out.mkdir(parents=True, exist_ok=True)
    table = render_table(rows)
    atomic_write_text(out / "table.md", table)
    atomic_write_json(out / "summary.json", rows)
    plot(rows, out / "accuracy.png", solve_rates(run_root, rows))
    return table


if __name__ == "__main__":
    print(write_summary(sys.argv[1]))
