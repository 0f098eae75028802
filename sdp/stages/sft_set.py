"""The SFT set: rendered prompt / completion pairs, loaded with `datasets` and tokenized as the sampler does.

The set is one JSONL/parquet file, a list of shard files, or a directory of them; it is loaded
as a memory-mapped Arrow table (never a Python list). Prompt ids come from
`sdp.sources.templates.encode_prompt`, then the completion's ids and EOS; prompt labels are -100
unless `completion_only` is false. A bad record is reported by file, line and field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sdp.sources.templates import DEFAULT_TEMPLATE, PromptTemplate, encode_prompt

SFT_SUFFIXES = (".jsonl", ".json", ".parquet")


def tokenize_pairs(
    tokenizer: Any,
    pairs: Sequence[Mapping[str, Any]],
    completion_only: bool = True,
    template: PromptTemplate = DEFAULT_TEMPLATE,
) -> dict[str, list[list[int]]]:
    """input_ids / labels columns for SFTTrainer (already processed, so TRL does not re-tokenize)."""
    input_ids, labels = [], []
    for pair in pairs:
        prompt_ids = encode_prompt(tokenizer, pair["prompt"], template)
        completion_ids = list(tokenizer(pair["completion"], add_special_tokens=False)["input_ids"])
        completion_ids.append(tokenizer.eos_token_id)
        ids = prompt_ids + completion_ids
        input_ids.append(ids)
        labels.append(([-100] * len(prompt_ids) if completion_only else prompt_ids) + completion_ids)
    return {"input_ids": input_ids, "labels": labels}


def sft_files(sft_path: str | Sequence[str]) -> list[str]:
    """The non-empty files of an SFT set given as a file, a list of files, or directories of shards."""
    paths = [sft_path] if isinstance(sft_path, (str, Path)) else list(sft_path)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix in SFT_SUFFIXES and not f.name.startswith(".")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"SFT set {p} does not exist")
    kinds = {f.suffix == ".parquet" for f in files}
    if len(kinds) > 1:
        raise ValueError(f"SFT set {sft_path}: mixes parquet and JSON files; use one format")
    return [str(f) for f in files if f.stat().st_size > 0]


def _first_bad_line(files: Sequence[str]) -> str:
    """Where a JSONL SFT set stops being valid (only called after `datasets` failed on it)."""
    for name in files:
        with open(name, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    return f"{name}: line {lineno}: not JSON ({err.msg})"
                for key in ("prompt", "completion"):
                    if not isinstance(record, dict) or not isinstance(record.get(key), str):
                        return f"{name}: line {lineno}: field {key!r} missing or not a string"
    return f"{', '.join(files)}: could not be read as one table (do the records share their fields' types?)"


def load_sft(sft_path: str | Sequence[str], cache_dir: str | Path) -> Any:
    """The SFT set as a memory-mapped `datasets.Dataset` (Arrow files under `cache_dir`)."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetGenerationError

    files = sft_files(sft_path)
    if not files:
        raise ValueError(f"SFT set {sft_path}: no examples (every file is empty)")
    parquet = files[0].endswith(".parquet")
    try:
        dataset = load_dataset(
            "parquet" if parquet else "json",
            data_files=files,
            split="train",
            cache_dir=str(cache_dir),
            keep_in_memory=False,
        )
    except DatasetGenerationError as err:
        where = f"{', '.join(files)}: {err.__cause__ or err}" if parquet else _first_bad_line(files)
        raise ValueError(f"bad SFT set: {where}") from err
    missing = {"prompt", "completion"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"SFT set {', '.join(files)}: records lack field(s) {sorted(missing)}")
    for key in ("prompt", "completion"):
        column = dataset.data.column(key)  # Arrow, memory-mapped: counting nulls reads no Python objects
        if getattr(dataset.features[key], "dtype", None) not in ("string", "large_string") or column.null_count:
            raise ValueError(f"bad SFT set: {_first_bad_line(files)}")
    return dataset


def tokenize_sft(
    dataset: Any, tokenizer: Any, completion_only: bool, fingerprint_key: str,
    template: PromptTemplate = DEFAULT_TEMPLATE,
) -> Any:
    """Tokenized input_ids / labels columns; deterministic fingerprint so other ranks reuse the cache."""

    def columns(batch: dict[str, list], indices: list[int]) -> dict[str, list[list[int]]]:
        for key in ("prompt", "completion"):
            for i, value in zip(indices, batch[key], strict=True):
                if not isinstance(value, str):
                    raise ValueError(f"SFT example {i}: field {key!r} is {type(value).__name__}, not a string")
        pairs = [{"prompt": p, "completion": c} for p, c in zip(batch["prompt"], batch["completion"], strict=True)]
        return tokenize_pairs(tokenizer, pairs, completion_only, template)

    fingerprint = hashlib.sha256(
        f"{dataset._fingerprint}\x1f{fingerprint_key}\x1f{completion_only}\x1f{template}".encode()
    ).hexdigest()[:32]
    return dataset.map(
        columns,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        new_fingerprint=fingerprint,
        desc="tokenizing the SFT set",
    )
