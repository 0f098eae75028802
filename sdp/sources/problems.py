"""The data contract: load problem sets and reject bad ones with errors naming file, line and field.

A problem is a mapping with `id` (a unique string), `domain` (a verifier name), `prompt`
(a non-empty string) and the fields its domain's verifier reads (`REQUIRED_FIELDS`).
Sources: `.jsonl`/`.json` files (one object per line; gzipped as `.jsonl.gz`), `.parquet` files, or anything
`datasets.load_dataset` accepts (a local dataset directory or script, or a hub name where
the hub is reachable). A source is a plain path (rows already in sdp's format) or a mapping
`{path, format, fields, split, subset, domain, id_prefix}` whose `format` names an adapter of
`sdp.sources.adapters` (gsm8k, math, humaneval, mbpp, apps, fields). Duplicate ids (across all sources of a set), missing or mistyped
fields, unknown domains and empty sets raise `ProblemError`; nothing is skipped silently.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import yaml

from sdp.sources.adapters import AdapterError, ProblemSource, RowContext, adapt
from verifiers.registry import UnknownVerifierError, available_verifiers, resolve_verifier_class

# Per domain, groups of fields of which at least one must be present (and be a str or list).
REQUIRED_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "math": (("answer",),),
    "code": (("tests", "io"),),
}
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "answer": (str, int, float),
    "tests": (str,),
    "entry_point": (str,),
    "io": (list,),
}


class ProblemError(ValueError):
    """A problem set breaks the data contract."""


def _where(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line is not None else source


def _read_jsonl(path: Path) -> Iterable[tuple[int, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as exc:
                raise ProblemError(
                    f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from exc


def _read_source(source: str, split: str, subset: str | None = None) -> Iterable[tuple[int | None, Any]]:
    """Yield (line or row number, raw record) from one source."""
    path = Path(source)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise ProblemError(f"{source}: no such problem file")
        import pyarrow.parquet as pq

        for row, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield row, record
        return
    if path.suffix in (".jsonl", ".json") or path.suffixes[-2:] in ([".jsonl", ".gz"], [".json", ".gz"]) or path.is_file():
        if not path.is_file():
            raise ProblemError(f"{source}: no such problem file")
        yield from _read_jsonl(path)
        return
    import datasets

    try:
        ds = datasets.load_dataset(source, subset, split=split)
    except Exception as exc:  # datasets raises many types for a missing/bad source
        which = f"split {split!r}" + (f", subset {subset!r}" if subset else "")
        raise ProblemError(f"{source}: cannot load as a datasets source ({which}): {exc}") from exc
    for row, record in enumerate(ds, start=1):
        yield row, record


def _known_domain(domain: str, known: set[str], cache: dict[str, bool]) -> bool:
    if domain in known:
        return True
    if ":" not in domain:
        return False
    if domain not in cache:
        try:
            resolve_verifier_class(domain)
            cache[domain] = True
        except UnknownVerifierError:
            cache[domain] = False
    return cache[domain]


def validate_problem(record: Any, where: str, known_domains: set[str], cache: dict[str, bool]) -> dict:
    """Check one raw record; return it as a plain dict or raise `ProblemError` at `where`."""
    if not isinstance(record, Mapping):
        raise ProblemError(f"{where}: a problem must be a JSON object, got {type(record).__name__}")
    for name in ("id", "domain", "prompt"):
        if name not in record or record[name] is None:
            raise ProblemError(f"{where}: missing field {name!r}")
        if not isinstance(record[name], str):
            raise ProblemError(f"{where}: field {name!r} must be a string, got {type(record[name]).__name__}")
    if not record["id"]:
        raise ProblemError(f"{where}: field 'id' is empty")
    if not record["prompt"].strip():
        raise ProblemError(f"{where}: field 'prompt' is empty (id {record['id']!r})")
    domain = record["domain"]
    if not _known_domain(domain, known_domains, cache):
        raise ProblemError(
            f"{where}: field 'domain': unknown domain {domain!r} (id {record['id']!r}); known verifiers: "
            f"{', '.join(sorted(known_domains))}, or a dotted path 'package.module:Class'"
        )
    for group in REQUIRED_FIELDS.get(domain, ()):
        if not any(record.get(name) not in (None, "", []) for name in group):
            wanted = " or ".join(repr(n) for n in group)
            raise ProblemError(f"{where}: missing field {wanted} for domain {domain!r} (id {record['id']!r})")
    for name, types in FIELD_TYPES.items():
        value = record.get(name)
        if value is not None and not isinstance(value, types):
            raise ProblemError(
                f"{where}: field {name!r} has type {type(value).__name__}, expected "
                f"{' or '.join(t.__name__ for t in types)} (id {record['id']!r})"
            )
    if isinstance(record.get("io"), list):
        for i, case in enumerate(record["io"]):
            if not isinstance(case, Mapping) or not {"input", "output"} <= set(case):
                raise ProblemError(f"{where}: field 'io'[{i}] must be an object with 'input' and 'output'")
    problem = dict(record)
    if isinstance(problem.get("answer"), (int, float)):
        problem["answer"] = str(problem["answer"])  # the contract's answers are strings
    return problem


SourceSpec = Union[str, Mapping[str, Any], ProblemSource]


def parse_sources(sources: SourceSpec | Iterable[SourceSpec]) -> list[ProblemSource]:
    """Problem sources from one spec or a list of them (plain paths and `{path, format, ...}` mappings)."""
    if isinstance(sources, (str, Mapping, ProblemSource)):
        sources = [sources]
    expanded: list[Any] = []
    for spec in sources:
        # A command-line flag gives mappings as YAML text: '{path: x.parquet, format: gsm8k}' or '[{...}, ...]'.
        if isinstance(spec, str) and spec.lstrip().startswith(("{", "[")):
            try:
                value = yaml.safe_load(spec)
            except yaml.YAMLError as exc:
                raise ProblemError(f"problem source {spec!r}: not a YAML mapping or list ({exc})") from exc
            expanded.extend(value if isinstance(value, list) else [value])
        else:
            expanded.append(spec)
    parsed = []
    for i, spec in enumerate(expanded):
        try:
            parsed.append(ProblemSource.parse(spec))
        except (ValueError, TypeError) as exc:
            raise ProblemError(f"problem source {i + 1}: {exc}") from exc
    if not parsed:
        raise ProblemError("no problem sources given")
    return parsed


def iter_problems(sources: SourceSpec | Iterable[SourceSpec], split: str = "train") -> Iterator[tuple[str, dict]]:
    """Yield (file:line, validated problem) one at a time, in source then line order (no duplicate check)."""
    known = set(available_verifiers())
    cache: dict[str, bool] = {}
    for source in parse_sources(sources):
        source_split = source.split or split
        for line, record in _read_source(source.path, source_split, source.subset):
            where = _where(source.path, line)
            try:
                record = adapt(record, RowContext(source, line or 0, source_split))
            except AdapterError as exc:
                raise ProblemError(f"{where}: field {exc.field!r}: {exc} (format {source.format!r})") from exc
            yield where, validate_problem(record, where, known, cache)


def load_problems(sources: SourceSpec | Iterable[SourceSpec], split: str = "train") -> list[dict]:
    """Load and validate one problem set from one or more sources, in source then line order."""
    specs = parse_sources(sources)
    problems: list[dict] = []
    seen: dict[str, str] = {}
    for where, problem in iter_problems(specs, split):
        if problem["id"] in seen:
            raise ProblemError(
                f"{where}: field 'id': duplicate id {problem['id']!r} (first at {seen[problem['id']]})"
            )
        seen[problem["id"]] = where
        problems.append(problem)
    if not problems:
        raise ProblemError(f"{', '.join(s.path for s in specs)}: the problem set is empty")
    return problems


def subset(problems: list[dict], size: int | None, seed: int) -> list[dict]:
    """A seeded random subset of `size` problems, kept in their original order."""
    if size is None or size >= len(problems):
        return list(problems)
    chosen = set(random.Random(seed).sample(range(len(problems)), size))
    return [p for i, p in enumerate(problems) if i in chosen]
