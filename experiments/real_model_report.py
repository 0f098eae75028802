"""The tables and the plot of experiments.real_model, from its per-seed rows (no model is loaded here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.sdp_vs_control import mean_sd, pass1

PARTS = ("math", "rft")
TITLES = {"math": "[math] bundled math held-out: SDP (adaptive budget) vs the same SFT steps on the worked seed examples",
          "rft": "[rft] fixed GSM8K test subset: RFT (gold SFT, then SDP rounds) vs the same SFT steps on gold only"}
ARM_NAMES = {"math": ("SDP", "control"), "rft": ("RFT", "gold-only")}


def _stat(values: list[float | None]) -> dict[str, Any]:
    mean, sd = mean_sd(values)
    return {"mean": mean, "sd": sd, "per_seed": values}


def summarize(per_seed: dict[int, dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Per arm and round: held-out pass@1 (%) over seeds; the arms' cost columns; the round-R lead of SDP."""
    seeds = sorted(per_seed)
    curve = {
        "sdp": [[per_seed[s]["sdp"][k]["math"] for s in seeds] for k in range(rounds + 1)],
        # The control's round 0 is the same starting model, evaluated once by the SDP arm.
        "control": [[per_seed[s]["sdp"][0]["math"] for s in seeds]]
        + [[pass1(per_seed[s]["control"][k - 1]["eval"], "math") for s in seeds] for k in range(1, rounds + 1)],
    }
    cost = {
        "sdp": [{key: mean_sd([per_seed[s]["sdp"][k].get(key) for s in seeds])[0]
                 for key in ("solved", "kept", "tokens", "steps", "wall_s")} for k in range(1, rounds + 1)],
        "control": [{key: mean_sd([per_seed[s]["control"][k - 1].get(key) for s in seeds])[0]
                     for key in ("steps", "seconds")} for k in range(1, rounds + 1)],
    }
    diffs = [a - b for a, b in zip(curve["sdp"][rounds], curve["control"][rounds], strict=True)
             if a is not None and b is not None]
    out = {"pass1": {arm: [_stat(v) for v in values] for arm, values in curve.items()}, "cost": cost,
           "lead": _stat(diffs)}
    if all("gold" in per_seed[s] for s in seeds):
        out["gold"] = {key: mean_sd([per_seed[s]["gold"][key] for s in seeds])[0]
                       for key in ("examples", "steps", "train_loss", "seconds")}
    return out


def _pm(stat: dict[str, Any]) -> str:
    return "          -" if stat["mean"] is None else f"{stat['mean']:5.1f} ± {stat['sd']:3.1f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def part_table(part: str, summary: dict[str, Any], per_seed: dict[int, dict], rounds: int, seeds: list[int]) -> str:
    """One part's table: pass@1 mean ± sd per round and arm, the cost columns (means), the lead, per-seed values."""
    sdp_name, control_name = ARM_NAMES[part]
    lines = [TITLES[part], f"held-out pass@1 (%), mean ± sd over seeds {seeds}; other columns: means over seeds"]
    if "gold" in summary:
        g = summary["gold"]
        lines.append(f"gold SFT before round 1 (both arms' round 0): {_num(g['examples'], '.0f')} rationales, "
                     f"{_num(g['steps'], '.0f')} steps, loss {_num(g['train_loss'], '.3f')}, "
                     f"{_num(g['seconds'], '.0f')} s")
    head = (f"round | {sdp_name:>11s}  {control_name:>11s} | {sdp_name}: solved  kept   tokens  steps  wall s"
            f" | {control_name}: steps  wall s")
    lines += [head, "-" * len(head)]
    for k in range(rounds + 1):
        row = f"{k:5d} | {_pm(summary['pass1']['sdp'][k])}  {_pm(summary['pass1']['control'][k])} |"
        if k:
            c, d = summary["cost"]["sdp"][k - 1], summary["cost"]["control"][k - 1]
            row += (f" {' ' * len(sdp_name)}  {_num(c['solved'], '6.0f')} {_num(c['kept'], '5.0f')}"
                    f" {_num(c['tokens'], '8.0f')} {_num(c['steps'], '6.0f')} {_num(c['wall_s'], '7.0f')} |"
                    f" {' ' * len(control_name)}  {_num(d['steps'], '5.0f')} {_num(d['seconds'], '7.0f')}")
        lines.append(row)
    lead = summary["lead"]
    lines.append(f"round-{rounds} lead of {sdp_name} over {control_name} (paired by seed): "
                 + ("-" if lead["mean"] is None else f"{lead['mean']:+.1f} ± {lead['sd']:.1f} points"))
    for arm, name in (("sdp", sdp_name), ("control", control_name)):
        for i, s in enumerate(seeds):
            values = [summary["pass1"][arm][k]["per_seed"][i] for k in range(rounds + 1)]
            lines.append(f"  seed {s} {name:9s}: " + " / ".join("-" if v is None else f"{v:.1f}" for v in values))
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, Any]], rounds: dict[str, int], path: Path) -> None:
    """Held-out pass@1 per round, one panel per part, error bars: sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(summary)
    fig, axes = plt.subplots(1, len(parts), figsize=(4.8 * len(parts), 3.6), squeeze=False)
    for ax, part in zip(axes[0], parts, strict=True):
        xs = list(range(rounds[part] + 1))
        for arm, style, name in (("sdp", "o-", ARM_NAMES[part][0]), ("control", "s--", ARM_NAMES[part][1])):
            stats = summary[part]["pass1"][arm]
            ax.errorbar(xs, [s["mean"] or 0 for s in stats], yerr=[s["sd"] or 0 for s in stats], fmt=style,
                        capsize=3, label=name)
        ax.set_title({"math": "bundled math held-out", "rft": "GSM8K test subset"}[part])
        ax.set_xlabel("round")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("pass@1 (%), mean ± sd over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
