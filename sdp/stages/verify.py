"""Stage: verify completions. ``python -m sdp.verify INPUT.jsonl [-o OUT.jsonl] [options]``.

Reads records (problem fields + ``completion``; ``domain`` names the verifier unless
``--verifier`` overrides it), writes each record back unchanged plus
``verdict: {ok, reason, answer}`` in input order, and prints ok / wrong / unverifiable counts.
The same :func:`verify_records` is the library entry point the round uses.

Records are verified in chunks by a pool of worker processes; each worker builds every
verifier it needs once and keeps it, so per-record overhead is a pickle round trip.
A verifier that raises gives that record an ``ok=False`` verdict carrying the error; a
worker process that dies is replaced and the records it held are retried one at a time,
so one bad record never stops the batch.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from verifiers.base import Verdict
from verifiers.registry import UnknownVerifierError, get_verifier, resolve_verifier_class

logger = logging.getLogger(__name__)

_MAX_CHUNK = 64
# Below this many records a process pool costs more (spawn + imports) than it saves.
_MIN_RECORDS_FOR_POOL = 64

# Verifiers built in this process, kept across chunks: (name, timeout) -> verifier.
_CACHE: dict[tuple[str, float], Any] = {}


@dataclass
class VerifyConfig:
    """Options of ``python -m sdp.verify`` (the input file is the positional argument)."""

    output: str | None = field(
        default=None,
        metadata={"aliases": ["-o"], "help": "Output JSONL (default: INPUT with .verified.jsonl)."},
    )
    verifier: str | None = field(
        default=None,
        metadata={"help": "Verifier for every record (name, plugin or pkg.module:Class); "
                  "default: each record's `domain`."},
    )
    workers: int | None = field(
        default=None, metadata={"help": "Worker processes (default: CPU count; 1 = in-process)."}
    )
    timeout: float = field(default=1.0, metadata={"help": "Seconds allowed per check."})
    skip_bad: bool = field(
        default=False,
        metadata={"help": "Skip malformed lines (listed in OUTPUT.bad.jsonl) instead of stopping."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})


class RecordError(ValueError):
    """A malformed input line (the message names file, line and field)."""


def _coerce(result: Any) -> dict[str, Any]:
    """A verifier's return value as a verdict dict (plugins may return a plain bool/None)."""
    if isinstance(result, Verdict):
        return result.to_dict()
    if result is None or isinstance(result, bool):
        return Verdict(result, "verifier returned a bare value").to_dict()
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    if isinstance(result, Mapping) and "ok" in result:
        return Verdict(result["ok"], str(result.get("reason", "")), result.get("answer")).to_dict()
    raise TypeError(f"verifier returned {type(result).__name__}, not a Verdict")


def _verify_one(record: Mapping[str, Any], name: str | None, timeout: float) -> dict[str, Any]:
    name = name or record.get("domain")
    if not isinstance(name, str) or not name:
        return Verdict(None, "record has no `domain` and no verifier was given").to_dict()
    completion = record.get("completion")
    if not isinstance(completion, str):
        return Verdict(False, "record has no `completion` string").to_dict()
    try:
        verifier = _CACHE.get((name, timeout))
        if verifier is None:
            verifier = _CACHE[(name, timeout)] = get_verifier(name, timeout=timeout)
        return _coerce(verifier.verify(record, completion))
    except Exception as exc:  # a crashing verifier costs one record, not the batch
        logger.debug("verifier %s crashed", name, exc_info=True)
        return Verdict(False, f"verifier error: {type(exc).__name__}: {exc}").to_dict()


def _verify_chunk(
    chunk: list[tuple[int, Mapping[str, Any]]], name: str | None, timeout: float
) -> list[tuple[int, dict[str, Any]]]:
    return [(i, _verify_one(record, name, timeout)) for i, record in chunk]


def _close_cache() -> None:
    for verifier in _CACHE.values():
        close = getattr(verifier, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                logger.debug("closing %r failed", verifier, exc_info=True)
    _CACHE.clear()


def _worker_init() -> None:
    # Workers are single-threaded number crunchers; N workers x M BLAS threads oversubscribes.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the round process holds threads (tqdm, torch) that fork would copy broken.
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )


def _run_pool(chunks: list, workers: int, name: str | None, timeout: float, bar: tqdm) -> dict:
    verdicts: dict[int, dict[str, Any]] = {}
    failed: list[tuple[int, Mapping[str, Any]]] = []
    with _pool(workers) as pool:
        futures = {pool.submit(_verify_chunk, chunk, name, timeout): chunk for chunk in chunks}
        for future in as_completed(futures):
            try:
                done = future.result()
            except Exception:  # a dead worker (BrokenProcessPool) or an unpicklable record
                failed.extend(futures[future])
                continue
            verdicts.update(done)
            bar.update(len(done))
    if failed:
        logger.warning(
            "a verifier worker process died; retrying its %d records one by one (if they all fail, "
            "check that the calling script guards its entry point with `if __name__ == '__main__':`)",
            len(failed),
        )
    # One record per fresh pool attempt: the record that kills a worker is the one blamed.
    pool = _pool(1) if failed else None
    try:
        for i, record in failed:
            try:
                verdicts.update(pool.submit(_verify_chunk, [(i, record)], name, timeout).result())
            except BrokenProcessPool:
                verdicts[i] = Verdict(False, "verifier crashed its worker process").to_dict()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _pool(1)
            except Exception as exc:
                verdicts[i] = Verdict(False, f"verifier error: {type(exc).__name__}: {exc}").to_dict()
            bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown()
    return verdicts


def verify_records(
    records: Iterable[Mapping[str, Any]],
    *,
    verifier: str | None = None,
    workers: int | None = None,
    timeout: float = 1.0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Return each record (unchanged) plus a ``verdict`` dict, in input order.

    ``verifier`` overrides the per-record ``domain``. A record that crashes a verifier gets
    a verdict ``ok=False`` with the error as reason; it never stops the batch. Runs across
    ``workers`` processes (default: the CPU count; 1 runs in this process). Unknown
    verifier names raise :class:`UnknownVerifierError` before any work starts.
    """
    records = list(records)
    names = {verifier} if verifier else {r.get("domain") for r in records} - {None, ""}
    for name in names:
        if isinstance(name, str):
            resolve_verifier_class(name)  # fail fast, listing the known names
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(workers, math.ceil(len(records) / _MAX_CHUNK) or 1))
    indexed = list(enumerate(records))
    bar = tqdm(total=len(records), desc="verify", unit="rec", disable=not progress)
    try:
        if workers == 1 or len(records) < _MIN_RECORDS_FOR_POOL:
            verdicts: dict[int, dict[str, Any]] = {}
            try:
                for start in range(0, len(indexed), _MAX_CHUNK):
                    done = _verify_chunk(indexed[start : start + _MAX_CHUNK], verifier, timeout)
                    verdicts.update(done)
                    bar.update(len(done))
            finally:
                _close_cache()
        else:
            # ~4 chunks per worker balances load; the cap keeps progress updates frequent.
            size = max(1, min(_MAX_CHUNK, math.ceil(len(indexed) / (workers * 4))))
            chunks = [indexed[s : s + size] for s in range(0, len(indexed), size)]
            verdicts = _run_pool(chunks, workers, verifier, timeout, bar)
    finally:
        bar.close()
    return [{**record, "verdict": verdicts[i]} for i, record in indexed]


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts of ``ok`` / ``wrong`` / ``unverifiable`` verdicts and the ``total``."""
    counts = {"ok": 0, "wrong": 0, "unverifiable": 0, "total": 0}
    for record in records:
        ok = (record.get("verdict") or {}).get("ok")
        counts["ok" if ok is True else "wrong" if ok is False else "unverifiable"] += 1
        counts["total"] += 1
    return counts


def read_records(
    path: str | Path, *, verifier: str | None = None, skip_bad: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parse a JSONL file; returns (records, bad lines). Raises RecordError unless skip_bad."""
    records, bad = [], []
    known: dict[str, str | None] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                _check_record(record, verifier, known)
            except (json.JSONDecodeError, RecordError) as exc:
                where = f"{path}:{lineno}"
                message = (
                    f"{where}: invalid JSON ({exc.msg} at column {exc.colno})"
                    if isinstance(exc, json.JSONDecodeError)
                    else f"{where}: {exc}"
                )
                if not skip_bad:
                    raise RecordError(message) from None
                logger.warning("skipping %s", message)
                bad.append({"file": str(path), "line": lineno, "error": message, "text": line.rstrip("\n")})
                continue
            records.append(record)
    return records, bad


def _check_record(record: Any, verifier: str | None, known: dict[str, str | None]) -> None:
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    if not isinstance(record.get("completion"), str):
        raise RecordError("field 'completion' is missing or not a string")
    if verifier:
        return
    domain = record.get("domain")
    if not isinstance(domain, str) or not domain:
        raise RecordError("field 'domain' is missing (or pass --verifier NAME)")
    if domain not in known:
        try:
            resolve_verifier_class(domain)
            known[domain] = None
        except UnknownVerifierError as exc:
            known[domain] = str(exc)
    if known[domain]:
        raise RecordError(f"field 'domain': {known[domain]}")


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a malformed input file)."""
    from transformers import HfArgumentParser  # heavy; only the CLI needs it

    parser = HfArgumentParser(VerifyConfig, prog="python -m sdp.verify", description=__doc__.split("\n", 1)[0])
    parser.add_argument("input", help="JSONL file of records with `completion`.")
    cfg, extra = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    in_path = Path(extra.input)
    out_path = Path(cfg.output) if cfg.output else in_path.with_name(in_path.stem + ".verified.jsonl")
    if cfg.verifier:
        try:
            resolve_verifier_class(cfg.verifier)
        except UnknownVerifierError as exc:
            parser.error(f"--verifier: {exc}")
    try:
        records, bad = read_records(in_path, verifier=cfg.verifier, skip_bad=cfg.skip_bad)
    except (RecordError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = verify_records(
        records, verifier=cfg.verifier, workers=cfg.workers, timeout=cfg.timeout, progress=cfg.progress
    )
    _write_jsonl(out_path, results)
    if bad:
        _write_jsonl(out_path.with_name(out_path.stem + ".bad.jsonl"), bad)
    counts = summarize(results)
    print(
        f"verified {counts['total']} records: {counts['ok']} ok, {counts['wrong']} wrong, "
        f"{counts['unverifiable']} unverifiable"
        + (f"; {len(bad)} malformed lines skipped (see {out_path.stem}.bad.jsonl)" if bad else "")
        + f" -> {out_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
