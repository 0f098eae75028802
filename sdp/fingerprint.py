"""What differs between a run directory's saved fingerprint and the current config, and which stage that reaches.

`sdp.round` refuses to resume a run directory with settings that change results; the refusal
names each differing field (`sft.max_steps: 'five' -> 5`) and the first stage of a round that
those fields feed, i.e. what would have to be re-run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# The first stage of a round each field feeds; a field not listed feeds sampling (the whole round).
STAGE_OF_FIELD: dict[str, str] = {
    **dict.fromkeys(("max_per_problem", "max_rationalized_share"), "select"),
    **dict.fromkeys(("sft", "lora", "kd", "quantize", "dtype", "teacher_dtype", "init_from", "launcher",
                     "num_processes", "accelerate_config"), "train"),
    **dict.fromkeys(("eval_sampling", "eval_k", "eval_problems", "eval_split", "max_eval_problems"), "evaluate"),
}
STAGE_ORDER = ("sample", "select", "train", "evaluate")


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


def refusal(root: str, saved: str, current: str) -> str:
    """The message of a refused resume: the fields that differ and what they would re-run."""
    try:
        diff = config_diff(json.loads(saved), json.loads(current))
    except ValueError:  # a fingerprint from before it was JSON
        diff = []
    if not diff:
        return (f"{root} was started with a different configuration (see {root}/config.yaml); use another "
                "--name, or the same settings.")
    fields = "; ".join(f"{name}: {change}" for name, change in diff)
    stage = first_stage(name for name, _ in diff)
    return (f"{root} was started with a different configuration: {fields}. That changes the {stage} stage "
            f"onwards, so the completed rounds would have to be re-run from {stage}; resuming with these "
            f"settings would mix results. Use another --name, or the settings in {root}/config.yaml.")
