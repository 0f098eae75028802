"""The project's one JSONL reader and writer: streaming, atomic, and safe for any text a verifier returns.

Every JSONL file sdp writes goes through `JsonlWriter` (or `atomic_write_jsonl` on top of it):
one object per line, keys sorted, UTF-8, written to a temporary sibling and renamed into place
only on success, so a killed writer never leaves a half file under the final name. Text that
plain UTF-8 cannot carry or that a terminal would act on -- lone surrogates (a program's error
message can hold `'\\udc80'`), DEL and the C1 control characters -- is written as JSON `\\uXXXX`
escapes; JSON already escapes the C0 controls. The file is then valid UTF-8, pure printable text,
and reads back to exactly the same strings.

`iter_jsonl` streams records one by one and raises `JsonlError` naming the file and line of a
malformed one; `read_jsonl` is the same for small files that may be held in memory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

# Lone surrogates (every surrogate in a Python str is unpaired), DEL and C1 controls, and the
# two Unicode line separators that break line-oriented readers.
_UNSAFE = re.compile("[\ud800-\udfff\x7f-\x9f\u2028\u2029]")


class JsonlError(ValueError):
    """A malformed JSONL line; the message names the file and line."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = str(path), line


def dumps(record: Any) -> str:
    """One JSON line (without the newline) for `record`, unsafe characters escaped."""
    text = json.dumps(record, ensure_ascii=False, sort_keys=True)
    if _UNSAFE.search(text):
        text = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, read lazily."""
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield lineno, line


def parse_line(path: str | Path, lineno: int, line: str) -> Any:
    """Decode one line, raising `JsonlError` with file, line and column."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise JsonlError(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Stream the JSON objects of a JSONL file (blank lines skipped); bad lines raise `JsonlError`."""
    for lineno, line in iter_lines(path):
        value = parse_line(path, lineno, line)
        if not isinstance(value, dict):
            raise JsonlError(path, lineno, f"expected a JSON object, got {type(value).__name__}")
        yield value


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a small JSONL file (stages stream with `iter_jsonl` instead)."""
    return list(iter_jsonl(path))


def count_lines(path: str | Path) -> int:
    """Number of records in a JSONL file, without decoding them."""
    return sum(1 for _ in iter_lines(path))


class JsonlWriter:
    """Write records one by one to `path`, atomically: `with JsonlWriter(p) as w: w.write(r)`.

    The data go to a per-process temporary sibling; leaving the block normally fsyncs and renames
    it to `path`, an exception removes it (the previous `path`, if any, stays as it was).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.count = 0
        self._fh: IO[str] | None = None

    def __enter__(self) -> JsonlWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.tmp.open("w", encoding="utf-8")
        return self

    def write(self, record: Mapping[str, Any]) -> None:
        assert self._fh is not None, "JsonlWriter.write outside its `with` block"
        self._fh.write(dumps(record) + "\n")
        self.count += 1

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._fh is not None
        if exc_type is None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self.tmp, self.path)
        else:
            self._fh.close()
            self.tmp.unlink(missing_ok=True)


def atomic_write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Stream `records` into `path` atomically; return the number of lines."""
    with JsonlWriter(path) as writer:
        writer.write_all(records)
    return writer.count
