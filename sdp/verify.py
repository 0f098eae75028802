"""`python -m sdp.verify INPUT.jsonl [-o OUT.jsonl] [options]`: the verify stage as a command.

Reads records (problem fields + ``completion``; ``domain`` names the verifier unless
``--verifier`` overrides it), writes each record back unchanged plus
``verdict: {ok, reason, answer}`` in input order, and prints ok / wrong / unverifiable counts.
Records are streamed: memory does not grow with the file. A self-contained file carries each
problem's fields in its records; a run's samples shard (which references problems by ``id``)
is verified with ``--problems`` naming the problems it references. A malformed line stops
the command (exit 2) naming file, line and field, and nothing is written, unless ``--skip-bad``.
``--compare math-verify`` also checks every math record with the math-verify package and prints
where the two verdicts disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdp.jsonl import JsonlError, JsonlWriter, count_lines, iter_jsonl, iter_lines, parse_line
from sdp.logs import setup_logging
from sdp.stages.verify import _MIN_RECORDS_FOR_POOL, RecordError, Verification
from verifiers.registry import UnknownVerifierError, resolve_verifier_class

logger = logging.getLogger("sdp.verify")


@dataclass(frozen=True)
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
    problems: str | None = field(
        default=None,
        metadata={"help": "JSONL of problems that records reference by `id` (a run's problems shard); "
                  "their fields are joined into each record for the verifier, not written out."},
    )
    workers: int | None = field(
        default=None, metadata={"help": "Worker processes (default: the CPUs this process may use; 1 = in-process)."}
    )
    timeout: float = field(default=1.0, metadata={"help": "Seconds allowed per check."})
    keep_truncated: bool = field(default=False, metadata={"help": "Verify records with finish_reason length "
                                 "(cut at the token limit) instead of failing them."})
    skip_bad: bool = field(
        default=False,
        metadata={"help": "Skip malformed lines (listed in OUTPUT.bad.jsonl) instead of stopping."},
    )
    compare: str | None = field(
        default=None, metadata={"help": "Also judge math records with this reference ('math-verify') and list disagreements."}
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})
    math_verify: str | None = field(
        default=None, metadata={"help": "Math verifier options as a YAML mapping, as a round config's "
                                "math_verify section: '{step_check: flag, convert_units: false}'."})


def check_record(record: Any, verifier: str | None, known: dict[str, str | None]) -> None:
    """Raise RecordError naming the field a record lacks for verification."""
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


def iter_records(
    path: str | Path,
    *,
    verifier: str | None = None,
    skip_bad: bool = False,
    bad: list[dict[str, Any]] | None = None,
    problems: dict[str, dict] | None = None,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Stream (record as read, record joined with its problem) from a JSONL file.

    A malformed line raises RecordError naming file, line and field, or with ``skip_bad`` is
    appended to ``bad`` and skipped.
    """
    known: dict[str, str | None] = {}
    for lineno, line in iter_lines(path):
        try:
            record = parse_line(path, lineno, line)
            joined = record
            if problems is not None and isinstance(record, dict):
                if record.get("id") not in problems:
                    raise RecordError(f"field 'id': {record.get('id')!r} is not in the --problems file")
                joined = {**problems[record["id"]], **record}
            check_record(joined, verifier, known)
        except (JsonlError, RecordError) as exc:
            message = str(exc) if isinstance(exc, JsonlError) else f"{path}:{lineno}: {exc}"
            if not skip_bad:
                raise RecordError(message) from None
            logger.warning("skipping %s", message)
            if bad is not None:
                bad.append({"file": str(path), "line": lineno, "error": message, "text": line.rstrip("\n")})
            continue
        yield record, joined


def _compare(in_path: Path, cfg: VerifyConfig, problems: dict[str, dict] | None) -> None:
    from verifiers.compare import compare_records, format_disagreements

    joined = (full for _, full in iter_records(in_path, verifier=cfg.verifier, skip_bad=True, problems=problems))
    math_records = (r for r in joined if (cfg.verifier or r.get("domain")) == "math")
    print(format_disagreements(compare_records(math_records, timeout=cfg.timeout)))


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    """`--field` and `--field-with-dashes` for each `VerifyConfig` field; bools take an optional true/false.

    Plain argparse: a verify command should not pay for importing transformers (about 1 s) to read its flags.
    """
    parser = argparse.ArgumentParser(prog="python -m sdp.verify", description=__doc__.split("\n", 1)[0],
                                     allow_abbrev=False)  # fmt: skip
    parser.add_argument("input", help="JSONL file of records with `completion`.")
    kinds = {"float": float, "int | None": int, "str | None": str}
    for f in dataclasses.fields(VerifyConfig):
        names = [f"--{f.name}", *([f"--{f.name.replace('_', '-')}"] if "_" in f.name else []),
                 *f.metadata.get("aliases", [])]  # fmt: skip
        if f.type == "bool":
            parser.add_argument(*names, dest=f.name, type=_flag, nargs="?", const=True, default=f.default,
                                metavar="true|false", help=f.metadata["help"])  # fmt: skip
            if f.default is True:
                parser.add_argument(f"--no_{f.name}", f"--no-{f.name}", dest=f.name, action="store_false",
                                    help=argparse.SUPPRESS)  # fmt: skip
        else:
            parser.add_argument(*names, dest=f.name, type=kinds[str(f.type)], default=f.default,
                                help=f.metadata["help"])  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a malformed input file)."""
    from tqdm.auto import tqdm

    parser = _parser()
    args = parser.parse_args(argv)
    cfg = VerifyConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(VerifyConfig)})
    math_verify = None
    if cfg.math_verify:
        from sdp.config import check_math_verify

        try:
            math_verify = check_math_verify(yaml.safe_load(cfg.math_verify))
        except (ValueError, yaml.YAMLError) as exc:
            parser.error(f"--math_verify: {exc}")
    setup_logging(fmt="%(levelname)s %(name)s: %(message)s")
    in_path = Path(args.input)
    out_path = Path(cfg.output) if cfg.output else in_path.with_name(in_path.stem + ".verified.jsonl")
    if cfg.verifier:
        try:
            resolve_verifier_class(cfg.verifier)
        except UnknownVerifierError as exc:
            parser.error(f"--verifier: {exc}")
    if cfg.compare not in (None, "math-verify"):
        parser.error(f"--compare: unknown reference {cfg.compare!r} (known: math-verify)")
    bad: list[dict[str, Any]] = []
    counts = {"ok": 0, "wrong": 0, "unverifiable": 0, "total": 0}
    bar = None
    try:
        lines = count_lines(in_path)
        bar = tqdm(total=lines, desc="verify", unit="rec", disable=not cfg.progress)
        problems = {p["id"]: p for p in iter_jsonl(cfg.problems)} if cfg.problems else None
        pairs = iter_records(in_path, verifier=cfg.verifier, skip_bad=cfg.skip_bad, bad=bad, problems=problems)
        held: deque[dict] = deque()
        small = lines < _MIN_RECORDS_FOR_POOL  # a pool would cost more than it saves

        def joined() -> Iterator[dict[str, Any]]:
            for record, full in pairs:
                held.append(record)
                yield full

        with Verification(verifier=cfg.verifier, workers=cfg.workers, timeout=cfg.timeout,
                          keep_truncated=cfg.keep_truncated, math_verify=math_verify) as verification:
            with JsonlWriter(out_path) as out:
                for verdict in verification.verdicts(joined(), in_process=small):
                    out.write({**held.popleft(), "verdict": verdict})
                    ok = verdict["ok"]
                    counts["ok" if ok is True else "wrong" if ok is False else "unverifiable"] += 1
                    counts["total"] += 1
                    bar.update(1)
    except (RecordError, JsonlError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if bad:
        with JsonlWriter(out_path.with_name(out_path.stem + ".bad.jsonl")) as out:
            out.write_all(bad)
    print(
        f"verified {counts['total']} records: {counts['ok']} ok, {counts['wrong']} wrong, "
        f"{counts['unverifiable']} unverifiable"
        + (f"; {len(bad)} malformed lines skipped (see {out_path.stem}.bad.jsonl)" if bad else "")
        + f" -> {out_path}"
    )
    if cfg.compare:
        _compare(in_path, cfg, problems)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
