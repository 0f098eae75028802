"""The ``code`` verifier: run the completion's program against the problem's tests, sandboxed.

The program is the last fenced block tagged ``python`` (or ``py``/``python3``); if there is
none, the last untagged fenced block; a final block the model never closed counts too.
Without any fence there is no code (``ok=False``): prose is never executed as a program.

A problem has ``tests`` (Python run after the program; ``check(<entry_point>)`` is called
when both exist) and/or ``io`` (stdin/stdout cases compared after trailing-whitespace
normalisation, with a zero exit status required). Tests run in a judge process that calls
the candidate's functions across a process boundary and receives plain data only, so exit
codes, printed markers, ``atexit``/``excepthook`` tricks and rigged ``__eq__`` decide
nothing (see ``sandbox/inside/judge.py``).

Reasons: ``passed``, ``no code``, ``syntax error``, ``wrong answer``, ``runtime error``,
``timeout``, ``memory limit``, ``output limit``; ``ok=None`` for problems that cannot be
verified (no tests, malformed ``io``, tests that need non-data arguments) and for a sandbox
that cannot run.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from sandbox import ExecResult, Limits, SandboxUnavailable, Status, get_pool
from sandbox.execution import clean_text
from verifiers.base import Verdict

logger = logging.getLogger(__name__)

# Matched against one line at a time (never across lines), so that extraction is linear in
# the completion's length: one regex over the whole text backtracked quadratically on a long
# final line that starts a fence.
_OPENER = re.compile(r"[ \t]*```[ \t]*([\w+.-]*)")
_CLOSER = re.compile(r"[ \t]*```[ \t]*")
_PYTHON_TAGS = {"python", "py", "python3", "py3"}
_DETAIL_CHARS = 300


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(tag, body)`` of every fenced block, in order, in one pass over the lines.

    An opening line is three backticks, a tag and anything after it, ended by a newline; the
    body runs to the next line that is only three backticks, or to the end of the text.
    """
    blocks, pos, size = [], 0, len(text)
    while pos < size:
        end = text.find("\n", pos)
        if end < 0:
            break  # an opening fence needs its newline
        opener = _OPENER.match(text, pos, end)
        pos = end + 1
        if opener is None:
            continue
        start = line = pos
        while True:
            nl = text.find("\n", line)
            line_end = size if nl < 0 else nl
            if _CLOSER.fullmatch(text, line, line_end):
                blocks.append((opener.group(1).lower(), text[start:line]))
                pos = line_end + 1
                break
            if nl < 0:
                blocks.append((opener.group(1).lower(), text[start:]))  # never closed
                return blocks
            line = nl + 1
    return blocks


def extract_code(completion: str) -> str | None:
    """The program in ``completion``: the last python-tagged fenced block, else the last
    untagged one, else None. Linear time in ``len(completion)``."""
    blocks = fenced_blocks(completion)
    for wanted in (lambda tag: tag in _PYTHON_TAGS, lambda tag: tag == ""):
        chosen = [body for tag, body in blocks if wanted(tag)]
        if chosen and chosen[-1].strip():
            return chosen[-1]
    return None


def normalize_output(text: str) -> str:
    """Trailing whitespace of each line and trailing blank lines are not significant."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).rstrip("\n")


def _short(text: Any) -> str:
    """One line of at most ``_DETAIL_CHARS``, safe for any UTF-8 writer (lone surrogates escaped)."""
    text = " ".join(clean_text(text).split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return _short(lines[-1]) if lines else ""


def verdict_for(result: ExecResult, limits: Limits) -> Verdict | None:
    """The failing verdict a sandbox result implies, or None if the run itself was clean."""
    status = result.status
    if status is Status.SANDBOX_ERROR:
        return Verdict(None, f"cannot verify: sandbox error: {_short(result.stderr)}")
    if status is Status.SYNTAX_ERROR:
        return Verdict(False, f"syntax error: {_last_line(result.syntax_error or '')}")
    if status is Status.TIMEOUT:
        # The sandbox says which limit it measured; it is never guessed from a signal here.
        if result.limit == "cpu":
            cpu_limit = limits.cpu_s if limits.cpu_s is not None else limits.wall_s
            return Verdict(False, f"timeout: more than {cpu_limit:g}s of CPU time (used {result.cpu_s:.2f}s)")
        return Verdict(False, f"timeout: more than {limits.wall_s:g}s of wall-clock time")
    if status is Status.MEMORY:
        return Verdict(False, f"memory limit: exceeded {limits.memory_mb} MiB")
    if status is Status.OUTPUT_LIMIT:
        return Verdict(False, f"output limit: more than {limits.output_bytes} bytes")
    judge = result.judge
    if judge is not None and not result.passed:
        kind, detail = judge.get("kind"), _short(judge.get("detail", ""))
        if kind == "unsupported":
            return Verdict(None, f"cannot verify: {detail}")
        if kind == "wrong":
            return Verdict(False, f"wrong answer: {detail}")
        if kind == "died":
            tail = _last_line(result.stderr)
            return Verdict(False, f"runtime error: {detail}" + (f" ({tail})" if tail else ""))
        return Verdict(False, f"runtime error: {detail}")
    if status is Status.ERROR:
        tail = _last_line(result.stderr) or f"exit status {result.exit_code}"
        return Verdict(False, f"runtime error: {tail}")
    return None


def judge_verdict(result: ExecResult, limits: Limits) -> Verdict:
    """The verdict of a tests job: a pass needs a clean run *and* the judge's word."""
    failed = verdict_for(result, limits)
    if failed is not None:
        return failed
    if result.passed is not True:
        return Verdict(False, "wrong answer: the tests did not complete")
    return Verdict(True, "passed")


class CodeVerifier:
    """Runs the completion's program in the sandbox against ``tests`` and/or ``io``.

    Args:
        timeout: CPU seconds per program run (each ``io`` case is one run); the wall clock
            allows ``3 * timeout + 1`` s, for programs that wait and for a loaded machine,
            so that load alone does not fail a correct program.
        memory_mb: address-space limit of the program.
        max_output_bytes: captured stdout+stderr per run; more is a failure.
        pool_size: sandboxes in this process's shared pool (first use only; default: CPUs).
    """

    name = "code"
    gold_fields = ("tests", "io")  # what the template guard keeps out of prompts

    def __init__(self, *, timeout: float = 5.0, memory_mb: int = 1024, max_output_bytes: int = 1 << 20,
                 pool_size: int | None = None) -> None:  # fmt: skip
        self.limits = Limits(wall_s=3 * float(timeout) + 1, cpu_s=float(timeout), memory_mb=int(memory_mb),
                             output_bytes=int(max_output_bytes))  # fmt: skip
        self.pool_size = pool_size

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        """Judge ``completion``; never raises, whatever the program or the record holds."""
        try:
            verdict = self._verify(problem, completion)
        except Exception as exc:  # noqa: BLE001 - an internal failure is not the model's fault
            logger.exception("code verifier failed on a record")
            verdict = Verdict(None, f"cannot verify: internal error: {type(exc).__name__}: {_short(exc)}")
        return Verdict(verdict.ok, clean_text(verdict.reason), verdict.answer)

    def _verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        tests, io_cases = problem.get("tests"), problem.get("io")
        if not tests and not io_cases:
            return Verdict(None, "cannot verify: the problem has neither 'tests' nor 'io'")
        if tests is not None and not isinstance(tests, str):
            return Verdict(None, f"cannot verify: 'tests' must be a string, got {type(tests).__name__}")
        entry = problem.get("entry_point") or None
        if entry is not None and not isinstance(entry, str):
            return Verdict(None, f"cannot verify: 'entry_point' must be a string, got {type(entry).__name__}")
        bad_io = _check_io(io_cases)
        if bad_io:
            return Verdict(None, f"cannot verify: {bad_io}")
        code = extract_code(completion if isinstance(completion, str) else "")
        if code is None:
            return Verdict(False, "no code: the completion has no fenced ```python block")
        try:
            pool = get_pool(self.pool_size)
            if tests:
                verdict = judge_verdict(pool.run_tests(code, tests, entry_point=entry, limits=self.limits), self.limits)
                if not verdict.ok:
                    return verdict
            for number, case in enumerate(io_cases or [], start=1):
                result = pool.run_script(code, stdin=case["input"], limits=self.limits)
                failed = verdict_for(result, self.limits)
                if failed is not None:
                    return Verdict(failed.ok, f"{failed.reason} (io case {number})")
                if normalize_output(result.stdout) != normalize_output(case["output"]):
                    got = _short(normalize_output(result.stdout)[:200])
                    return Verdict(False, f"wrong answer: io case {number}: got {got!r}")
        except SandboxUnavailable as exc:
            logger.error("code verifier cannot run the sandbox: %s", exc)
            return Verdict(None, f"cannot verify: sandbox unavailable: {exc}")
        except Exception as exc:  # noqa: BLE001 - an internal failure is not the model's fault
            logger.exception("code verifier failed on problem %r", problem.get("id"))
            return Verdict(None, f"cannot verify: sandbox failure: {type(exc).__name__}: {_short(exc)}")
        return Verdict(True, "passed")


def _check_io(io_cases: Any) -> str | None:
    if io_cases is None:
        return None
    if not isinstance(io_cases, list):
        return f"'io' must be a list of {{'input', 'output'}} objects, got {type(io_cases).__name__}"
    for number, case in enumerate(io_cases, start=1):
        if not isinstance(case, Mapping) or not isinstance(case.get("input"), str) or not isinstance(
            case.get("output"), str
        ):
            return f"'io' case {number} must be an object with string 'input' and 'output'"
    return None
