"""The round's side of where sampling is spent (docs/sampling.md): the pass-rate filter, the sampler's
budget spec, and what both add to metrics.json.

Nothing here changes a round with the defaults (`sampling_budget: fixed`, no `rationalize`, no
`pass_rate_filter`): the sample task then carries no budget and metrics gain no keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdp.config import RoundConfig
from sdp.rundir import atomic_write_json

FILTER_FILE = "pass_rate_filter.json"


def in_band(rate: float, band: tuple[float, float] | list[float]) -> bool:
    """Whether a solve rate is inside [low, high]; both edges are inside."""
    return band[0] <= rate <= band[1]


def filter_by_pass_rate(problems: list[dict], rates: Mapping[str, float],
                        band: tuple[float, float] | list[float]) -> tuple[list[dict], dict[str, Any]]:
    """The problems to sample this round and the report: a problem with a previous-round solve rate
    outside the band is skipped; one the previous round did not sample is kept (no evidence)."""
    kept, skipped_low, skipped_high, unseen = [], 0, 0, 0
    for problem in problems:
        rate = rates.get(problem["id"])
        if rate is None:
            unseen += 1
        elif rate < band[0]:
            skipped_low += 1
            continue
        elif rate > band[1]:
            skipped_high += 1
            continue
        kept.append(problem)
    report = {"band": list(band), "problems": len(problems), "kept": len(kept), "unseen_kept": unseen,
              "skipped": skipped_low + skipped_high, "skipped_below": skipped_low, "skipped_above": skipped_high}
    return kept, report


def apply_pass_rate_filter(cfg: RoundConfig, k: int, problems: list[dict], round_dir: Path,
                           previous_dir: Path) -> list[dict]:
    """Round k's problems after the filter (round 1 has no previous round: none is applied).

    The report is written to `<round>/pass_rate_filter.json` before the shards are planned, so a
    planned round always has it.
    """
    if cfg.pass_rate_filter is None or k < 2:
        return problems
    path = previous_dir / "solve_rates.json"
    if not path.exists():
        raise SystemExit(f"pass_rate_filter: round {k - 1}'s {path} is missing (its select stage writes it)")
    kept, report = filter_by_pass_rate(problems, json.loads(path.read_text()), cfg.pass_rate_filter)
    if not (round_dir / FILTER_FILE).exists():
        round_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(round_dir / FILTER_FILE, {"previous_round": k - 1, **report})
    return kept


def budget_spec(cfg: RoundConfig, problems: int) -> dict[str, Any]:
    """The sample task's `budget` (a `BudgetSpec` as a dict); empty for plain fixed sampling."""
    if not cfg.sampler_verifies:
        return {}
    from sdp.stages.budget_plan import BudgetSpec

    sampling = dict(cfg.sampling or {})
    n = int(sampling.get("n", 1))
    adaptive = cfg.sampling_budget == "adaptive"
    spec = BudgetSpec(
        mode=cfg.sampling_budget,
        wave_n=cfg.wave_n if adaptive else n,
        max_n=cfg.max_n if adaptive else n,
        budget_samples=(cfg.budget_samples or n * problems) if adaptive else None,
        budget_tokens=cfg.budget_tokens if adaptive else None,
        max_tokens=int(sampling.get("max_tokens", 16)),  # vLLM's default
        max_per_problem=cfg.max_per_problem,
        verifier=cfg.verifier,
        verify_timeout=cfg.verify_timeout,
        verify_workers=cfg.verify_workers,
        keep_truncated=cfg.keep_truncated,
        math_verify=cfg.math_verify,
        rationalize=cfg.rationalize,
        rationalize_template=cfg.rationalize_template,
        rationalize_n=cfg.rationalize_n or (cfg.wave_n if adaptive else n),
        rationalize_reserve=cfg.rationalize_reserve,
    )
    return spec.to_dict()


def budget_summary(root: Path) -> dict[str, Any] | None:
    """The sampler's budget.json of a shard set, if it sampled in waves."""
    path = root / "budget.json"
    return json.loads(path.read_text()) if path.exists() else None


def budget_metrics(round_dir: Path, infos: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """metrics.json keys of the features that ran this round (none for a plain round)."""
    out: dict[str, Any] = {}
    budget = infos["sample"].get("budget")
    if budget:
        out["sampling"] = {key: budget[key] for key in (
            "mode", "waves", "samples", "sampled_tokens", "budget_samples", "budget_tokens", "samples_per_problem",
            "stopped_early", "exhausted", "unsampled", "per_wave")}
        out["sampling"]["problems_solved_unhinted"] = budget["problems_solved"]
    select = infos["select"]
    if budget and "rationalize" in budget:
        hinted = budget["rationalize"]
        out["rationalized"] = {
            "problems_hinted": hinted["problems"],
            "samples": hinted["samples"],
            "tokens": hinted["tokens"],
            "verified_ok": hinted["ok"],
            "quotes_hint": hinted["quotes_hint"],
            "kept": select.get("rationalized_kept", 0),
            "over_share": select.get("rationalized_over_share", 0),
            "problems_kept": select.get("problems_rationalized", 0),
        }
    path = round_dir / FILTER_FILE
    if path.exists():
        out["pass_rate_filter"] = json.loads(path.read_text())
    return out
