"""The run directory: atomic file writes and a manifest of completed stages, for resume.

Layout (docs/pipeline.md): `runs/<name>/config.yaml`, `manifest.json`, `round-0/` (baseline
evaluation), `round-<k>/` (the round's shard directories `problems/`, `samples/`, `verdicts/`,
then sft.jsonl, solve_rates.json, checkpoint/, `eval/`, metrics.json) and `summary/`. A stage
counts as done once the manifest says so; inside the sharded stages each shard file is itself
the record that the shard is done (see `sdp.shards`), so a killed stage redoes only its
unfinished shards. Every write goes to a temporary sibling first, then `os.replace`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The one JSONL reader/writer lives in sdp.jsonl; re-exported for callers of the older names.
from sdp.jsonl import atomic_write_jsonl, iter_jsonl, read_jsonl  # noqa: F401

MANIFEST = "manifest.json"


def _tmp_sibling(path: Path) -> Path:
    # Unique per process: a stray writer from a killed run never shares a temp file.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temp file + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move a finished directory `src` to `dst`, replacing an older `dst`."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        trash = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def fresh_tmp_dir(parent: str | Path, name: str) -> Path:
    """An empty scratch directory next to where `name` will land (same filesystem)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))


class RunDir:
    """`runs/<name>/` with its manifest of completed stages."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        self.manifest: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    def round_dir(self, k: int) -> Path:
        path = self.root / f"round-{k}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def key(k: int, stage: str) -> str:
        return f"round-{k}/{stage}"

    def done(self, k: int, stage: str) -> bool:
        return self.key(k, stage) in self.manifest

    def info(self, k: int, stage: str) -> dict:
        """What a completed stage recorded (counts, timings, output paths)."""
        return self.manifest[self.key(k, stage)]

    def mark_done(self, k: int, stage: str, info: Mapping[str, Any]) -> None:
        self.manifest[self.key(k, stage)] = dict(info)
        self.save_manifest()

    def save_manifest(self) -> None:
        atomic_write_json(self.root / MANIFEST, self.manifest)

    def round_complete(self, k: int) -> bool:
        return self.done(k, "metrics")

    def completed_rounds(self) -> list[int]:
        rounds = {int(key.split("/")[0].split("-")[1]) for key in self.manifest if key.endswith("/metrics")}
        return sorted(r for r in rounds if r >= 1)

    def clean_partial(self, k: int) -> None:
        """Remove temp files and scratch dirs left anywhere in round `k` by a killed run."""
        directory = self.root / f"round-{k}"
        if not directory.exists():
            return
        stale = [
            p for p in directory.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name
        ]
        for path in sorted(stale, key=lambda p: len(p.parts)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink(missing_ok=True)
