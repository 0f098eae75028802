"""A second opinion: where our ``math`` verifier and HuggingFace ``math-verify`` disagree.

``python -m verifiers.compare FILE.jsonl [--timeout S] [--json]`` judges every math record
(``answer`` + ``completion``; records whose ``domain`` is not ``math`` are left out) with both
graders and prints the records where one passes and the other does not, with both verdicts,
so a data set can be audited before it is trained on. Library use (``sdp.verify --compare
math-verify`` calls these)::

    rows = compare_records(records, timeout=1.0)   # an iterator of disagreement rows
    print(format_disagreements(rows))

math-verify (a dev dependency) bounds its own time with ``signal.alarm``, so the comparison
must run in the main thread of the main interpreter: fine for a command, not for a thread
pool (our verifier has no such limit).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from verifiers.math_verifier import MathVerifier

_SHOWN_CHARS = 60


class _Comparison(Iterator[dict[str, Any]]):
    """The disagreement rows of one pass over ``records``; counts what it saw on the way."""

    def __init__(self, records: Iterable[dict[str, Any]], timeout: float) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("math-verify uses signal.alarm: compare records from the main thread")
        try:
            from math_verify import parse, verify
        except ImportError as exc:  # a dev dependency, not a runtime one
            raise RuntimeError("the comparison needs math-verify: pip install math-verify") from exc
        self._parse, self._verify = parse, verify
        # it logs every timeout with the whole input (megabytes for a looping completion): the rows say enough
        logging.getLogger("math_verify").setLevel(logging.CRITICAL)
        self._records = iter(records)
        self._alarm_s = max(1, math.ceil(timeout))  # signal.alarm takes whole seconds
        self._ours = MathVerifier(timeout=timeout)
        self.compared = 0
        self.skipped = 0  # not math, or no gold answer / completion to compare
        self._seen = 0

    def __next__(self) -> dict[str, Any]:
        try:
            for record in self._records:
                self._seen += 1
                if not isinstance(record, dict):
                    raise TypeError(f"record {self._seen}: expected a JSON object, got {type(record).__name__}")
                row = self._one(record)
                if row is not None:
                    return row
        except BaseException:
            self._ours.close()
            raise
        self._ours.close()
        raise StopIteration

    def _one(self, record: dict[str, Any]) -> dict[str, Any] | None:
        gold, completion = record.get("answer"), record.get("completion")
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            gold = str(gold)
        domain = record.get("domain", "math")
        if domain != "math" or not isinstance(gold, str) or not gold.strip() or not isinstance(completion, str):
            self.skipped += 1
            return None
        self.compared += 1
        ours = self._ours.verify(record, completion)
        theirs_ok, theirs_answer = self._math_verify(gold, completion)
        if (ours.ok is True) == theirs_ok:
            return None
        return {
            "id": record.get("id"),
            "gold": gold,
            "ours_ok": ours.ok,
            "ours_reason": ours.reason,
            "ours_answer": ours.answer,
            "math_verify_ok": theirs_ok,
            "math_verify_answer": theirs_answer,
        }

    def _math_verify(self, gold: str, completion: str) -> tuple[bool, str | None]:
        try:
            gold_parsed = self._parse(f"${gold}$", parsing_timeout=self._alarm_s)
            pred = self._parse(completion, parsing_timeout=self._alarm_s)
            ok = bool(self._verify(gold_parsed, pred, timeout_seconds=self._alarm_s))
        except Exception as exc:  # its failure on one record is its verdict there, not ours to raise
            return False, f"error: {type(exc).__name__}: {exc}"
        answer = None
        if pred:
            answer = str(pred[1]) if len(pred) > 1 else str(pred[0])
        return ok, answer


def compare_records(records: Iterable[dict[str, Any]], *, timeout: float) -> Iterator[dict[str, Any]]:
    """Yield one row per math record where the two graders disagree (one passes, one does not).

    Row keys: ``id``, ``gold``, ``ours_ok``, ``ours_reason``, ``ours_answer``,
    ``math_verify_ok``, ``math_verify_answer``. ``timeout`` (seconds) bounds each of our
    checks and each math-verify call (rounded up to whole seconds for its ``signal.alarm``).
    The returned iterator also counts ``compared`` and ``skipped`` records. Main thread only.
    """
    return _Comparison(records, timeout)


def _short(text: Any) -> str:
    s = repr(text)
    return s if len(s) <= _SHOWN_CHARS else s[: _SHOWN_CHARS - 3] + "..."


def _pass(ok: Any) -> str:
    return {True: "pass", False: "fail", None: "cannot verify"}.get(ok, repr(ok))


def format_disagreements(rows: Iterable[dict[str, Any]]) -> str:
    """Human-readable lines for the rows, then a summary line (consumes ``rows``)."""
    lines, ours_only, theirs_only = [], 0, 0
    for row in rows:
        if row["ours_ok"] is True:
            ours_only += 1
        else:
            theirs_only += 1
        lines.append(
            f"{row['id'] if row['id'] is not None else '-'}: gold {_short(row['gold'])}\n"
            f"    sdp math    {_pass(row['ours_ok'])} ({row['ours_reason']}), answer {_short(row['ours_answer'])}\n"
            f"    math-verify {_pass(row['math_verify_ok'])}, answer {_short(row['math_verify_answer'])}"
        )
    total = ours_only + theirs_only
    summary = f"{total} disagreement{'s' if total != 1 else ''}"
    compared = getattr(rows, "compared", None)
    if compared is not None:
        summary += f" among {compared} math records compared"
        if getattr(rows, "skipped", 0):
            summary += f" ({rows.skipped} skipped: not math, or no gold answer or completion)"  # type: ignore[attr-defined]
    summary += f": sdp passes and math-verify fails {ours_only}, math-verify passes and sdp does not {theirs_only}"
    return "\n".join(lines + [summary])


def _read(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            if record.get("domain", "math") == "math":
                for name in ("answer", "completion"):
                    if name not in record:
                        raise ValueError(f"{path}:{lineno}: field {name!r} is missing")
                if not isinstance(record["completion"], str):
                    raise ValueError(f"{path}:{lineno}: field 'completion' is not a string")
            yield record


def main(argv: list[str] | None = None) -> int:
    """The command: print the disagreements of FILE (exit 2 on a malformed line)."""
    parser = argparse.ArgumentParser(prog="python -m verifiers.compare", description=__doc__.split("\n", 1)[0])
    parser.add_argument("file", help="JSONL records with 'answer' and 'completion' (e.g. sdp.verify's output)")
    parser.add_argument("--timeout", type=float, default=1.0, help="Seconds per check, for each grader.")
    parser.add_argument("--json", action="store_true", help="Print one JSON row per disagreement instead.")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    rows = compare_records(_read(args.file), timeout=args.timeout)
    try:
        if args.json:
            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            print(format_disagreements(rows))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
