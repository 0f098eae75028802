"""What differs between a run directory's saved fingerprint and the current config, which stage that reaches,
and the rewind that re-runs from there.

When only fields of a later stage differ (SFT, LoRA, KD, quantization, selection, evaluation sampling),
`sdp.round` rewinds the run directory to that stage and keeps everything before it: the samples and
verdicts of the first round are reused. Rounds after it are dropped whole when the policy samples them
(their candidates came from a checkpoint that is re-trained), and from the same stage when a fixed
`teacher_model` samples them. Any other difference (the model, the problems, sampling, the seed, ...)
is refused, naming each differing field (`sampling.n: 8 -> 4`) and the first stage it feeds.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

from sdp.config import BUDGET_FIELDS, RoundConfig
from sdp.rundir import RunDir

# The budget fields' values before the adaptive budget became the default; a run fingerprinted
# then has none of these keys.
_BUDGET_BEFORE = {"sampling_budget": "fixed", "wave_n": 4, "budget_tokens": None}

# The first stage of a round each field feeds; a field not listed feeds sampling (the whole round).
STAGE_OF_FIELD: dict[str, str] = {
    **dict.fromkeys(("max_per_problem", "max_rationalized_share"), "select"),
    **dict.fromkeys(("sft", "lora", "kd", "quantize", "dtype", "teacher_dtype", "init_from", "launcher",
                     "num_processes", "accelerate_config"), "train"),
    # Not the held-out problems themselves: they also decide the overlap and decontamination of the training set.
    **dict.fromkeys(("eval_sampling", "eval_k"), "evaluate"),
}
STAGE_ORDER = ("sample", "select", "train", "evaluate")
# A round's stages from each rewind point on, and the files they wrote (relative to round-<k>/).
_LATER = {"select": ("select", "train", "evaluate", "metrics"), "train": ("train", "evaluate", "metrics"),
          "evaluate": ("evaluate", "metrics")}
_FILES = {"select": ("sft.jsonl", "solve_rates.json"), "train": ("checkpoint", "trainer", "train_stats.json"),
          "evaluate": ("eval",), "metrics": ("metrics.json",)}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, "old -> new") for every differing field; dict sections compared key by key (`sft.max_steps`)."""
    missing = "<unset>"
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub, missing) != b.get(sub, missing):
                    out.append((f"{key}.{sub}", f"{_short(a.get(sub, missing))} -> {_short(b.get(sub, missing))}"))
        else:
            out.append((key, f"{_short(a)} -> {_short(b)}"))
    return out


def first_stage(fields: Iterable[str]) -> str:
    """The earliest round stage that any of `fields` (top-level or dotted) feeds."""
    stages = {STAGE_OF_FIELD.get(f.split(".")[0], "sample") for f in fields}
    return min(stages, key=STAGE_ORDER.index) if stages else "sample"


def changed(saved: str, current: str) -> list[tuple[str, str]]:
    """`config_diff` of two fingerprints (empty for an unreadable old one)."""
    try:
        return config_diff(json.loads(saved), json.loads(current))
    except ValueError:  # a fingerprint from before it was JSON
        return []


def rewind_stage(saved: str, current: str) -> str | None:
    """The stage a resume with these settings re-runs from, or None when it must be refused."""
    diff = changed(saved, current)
    stage = first_stage(name for name, _ in diff) if diff else "sample"
    return None if stage == "sample" else stage


def refusal(root: str, saved: str, current: str) -> str:
    """The message of a refused resume: the fields that differ and what they would re-run."""
    diff = changed(saved, current)
    if not diff:
        return (f"{root} was started with a different configuration (see {root}/config.yaml); use another "
                "--name, or the same settings.")
    fields = "; ".join(f"{name}: {change}" for name, change in diff)
    stage = first_stage(name for name, _ in diff)
    return (f"{root} was started with a different configuration: {fields}. That changes the {stage} stage "
            f"onwards, so the completed rounds would have to be re-run from {stage}; resuming with these "
            f"settings would mix results. Use another --name, or the settings in {root}/config.yaml.")


def _round_of(key: str) -> int:
    return int(key.split("/")[0].split("-")[1])


def _drop(run: RunDir, k: int, stages: Iterable[str]) -> None:
    for stage in stages:
        run.manifest.pop(run.key(k, stage), None)
        for name in _FILES.get(stage, ()):
            path = run.root / f"round-{k}" / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def rewind(run: RunDir, stage: str, teacher_sampled: bool) -> str:
    """Forget `stage` onwards (select, train or evaluate) as `sdp.fingerprint` describes; return what is re-run."""
    rounds = sorted({_round_of(key) for key in run.manifest})
    if stage == "evaluate":
        for k in rounds:
            _drop(run, k, _LATER["evaluate"])
        what = f"the evaluate stage of rounds {rounds}"
    else:
        trained = [k for k in rounds if k >= 1]
        if not trained:
            return "nothing (no round has started)"
        first = trained[0]
        for k in trained:
            if k == first or teacher_sampled:
                _drop(run, k, _LATER[stage])
            else:
                for key in [key for key in run.manifest if _round_of(key) == k]:
                    del run.manifest[key]
                shutil.rmtree(run.root / f"round-{k}", ignore_errors=True)
        later = "" if len(trained) == 1 else (f"; rounds {trained[1:]} from {stage}" if teacher_sampled
                                               else f"; rounds {trained[1:]} whole")
        what = f"round {first} from its {stage} stage (its samples and verdicts are kept){later}"
    run.save_manifest()
    return what


def config_fingerprint(cfg: Any) -> str:
    """Canonical JSON of the fields that change results (not where the run lives, how far it goes, or progress bars).

    `cfg`: a `RoundConfig`, or an `sdp.evaluate.EvalConfig` (its fields only)."""
    data = cfg.to_dict()
    # Where and how parallel the work runs, and what is reported, leave the results as they are.
    for key in ("name", "output_dir", "round", "rounds", "progress", "verify_workers", "overlap_verify",
                "report_to", "executor", "ray_address", "replicas", "luck_check", "dry_run"):
        data.pop(key, None)
    # Fields added after runs existed leave a run's fingerprint as it was while they hold the values
    # runs had before them (the fixed budget, the embedded default until issue 30).
    defaults = RoundConfig.__dataclass_fields__
    for key in (*BUDGET_FIELDS, "math_verify"):
        f = defaults[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if data.get(key) == _BUDGET_BEFORE.get(key, default):
            data.pop(key, None)
    return json.dumps(data, sort_keys=True)
