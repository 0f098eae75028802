"""Stage: verify completions, record by record or shard by shard (`python -m sdp.verify` is its command).

:class:`Verification` streams records through a pool of worker processes (sized from the CPUs
this process may use) and yields each record plus ``verdict: {ok, reason, answer}`` in input
order; each worker builds every verifier it needs once and keeps it. :meth:`Verification.verify_shard`
turns one shard's samples file into its verdicts file (`sdp.shards`); :func:`verify_records` is
the list-in, list-out form for small inputs.

One record never sinks a batch: a verifier that raises or returns something that is not a
verdict gives that record ``ok: null`` with the reason; a worker process that dies or hangs costs
only its chunk, which is retried record by record, and the record that kills a worker again gets
``ok: null``, reason "verifier crashed" (or "verifier timed out").

One rule sits above every verifier: a completion cut at the token limit (``finish_reason:
length``) fails with reason "truncated: ..." before its verifier sees it, unless
``keep_truncated`` is set. A cut trace never finished its reasoning; an answer it happens to
contain is a guess the model would be trained to repeat.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tqdm.auto import tqdm

from sdp.jsonl import JsonlWriter, iter_jsonl
from sdp.launch.workers import OrderedPool, chunked, usable_cpus
from sdp.shards import Shard
from verifiers._math_config import MathVerifyConfig
from verifiers.base import Verdict
from verifiers.math_verifier import MathVerifier
from verifiers.registry import get_verifier, resolve_verifier_class

logger = logging.getLogger(__name__)

_MAX_CHUNK = 64
# Below this many records a process pool costs more (spawn + imports) than it saves.
_MIN_RECORDS_FOR_POOL = 64
# Records of a `light` verifier (milliseconds per check, in this process, bounded: math) verified here before
# a pool starts: a worker costs a process start, its imports and its own sympy child (about a second of CPU
# each), more than 2,000 light checks on a small machine; a large input still gets its pool after them.
_LIGHT_IN_PROCESS = 2048

# Verifiers built in this process, kept across chunks: (name, timeout, math options) -> verifier.
_CACHE: dict[tuple[str, float, MathVerifyConfig | None], Any] = {}

TRUNCATED = "truncated: the completion was cut at the token limit (finish_reason length)"


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
        ok = result["ok"]
        if ok is not None and not isinstance(ok, bool):
            raise TypeError(f"verdict ok must be true, false or null, got {ok!r}")
        answer = result.get("answer")
        return Verdict(ok, str(result.get("reason", "")), None if answer is None else str(answer)).to_dict()
    raise TypeError(f"verifier returned {type(result).__name__}, not a Verdict")


def build_verifier(name: str, timeout: float, math_config: MathVerifyConfig | None = None) -> Any:
    """The verifier ``name`` with ``timeout``; a math verifier (or a subclass) also gets ``math_config``.

    The one place every stage builds its verifiers (verify, the sampler's waves, Ray tasks, the luck
    pass, evaluation), so one configured set of math options reaches every verdict.
    """
    target = resolve_verifier_class(name)
    if math_config is not None and isinstance(target, type) and issubclass(target, MathVerifier):
        return get_verifier(name, timeout=timeout, config=math_config)
    return get_verifier(name, timeout=timeout)


def math_config_of(options: Mapping[str, Any] | MathVerifyConfig | None) -> MathVerifyConfig | None:
    """A round config's ``math_verify`` section as a `MathVerifyConfig` (None: the defaults)."""
    if options is None or isinstance(options, MathVerifyConfig):
        return options
    return MathVerifyConfig.from_mapping(dict(options))


def verify_one(
    record: Mapping[str, Any], name: str | None, timeout: float, keep_truncated: bool = False,
    math_config: MathVerifyConfig | None = None,
) -> dict[str, Any]:
    """The verdict of one record; any failure of the verifier is an ``ok: null`` verdict with its reason."""
    if record.get("finish_reason") == "length" and not keep_truncated:
        return Verdict(False, TRUNCATED).to_dict()
    name = name or record.get("domain")
    if not isinstance(name, str) or not name:
        return Verdict(None, "record has no `domain` and no verifier was given").to_dict()
    completion = record.get("completion")
    if not isinstance(completion, str):
        return Verdict(False, "record has no `completion` string").to_dict()
    try:
        key = (name, timeout, math_config)
        verifier = _CACHE.get(key)
        if verifier is None:
            verifier = _CACHE[key] = build_verifier(name, timeout, math_config)
        return _coerce(verifier.verify(record, completion))
    except Exception as exc:  # a crashing verifier costs one record, not the batch
        logger.debug("verifier %s crashed", name, exc_info=True)
        return Verdict(None, f"verifier error: {type(exc).__name__}: {exc}").to_dict()


_Item = tuple[Mapping[str, Any], str | None, float, bool, MathVerifyConfig | None]


def _verify_chunk(chunk: list[_Item]) -> list[dict[str, Any]]:
    return [verify_one(*item) for item in chunk]


def _fallback(item: _Item, reason: str) -> dict[str, Any]:
    return Verdict(None, reason).to_dict()


def _close_cache() -> None:
    for verifier in _CACHE.values():
        close = getattr(verifier, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                logger.debug("closing %r failed", verifier, exc_info=True)
    _CACHE.clear()


class Verification:
    """Verdicts for a stream of records, in order, in worker processes or in this one.

    One instance keeps its worker pool (and every verifier the workers built) for all the shards
    of a stage. ``workers=None`` uses every CPU this process may use; 1 verifies in-process.
    ``keep_truncated`` lets completions cut at the token limit reach their verifier. ``math_verify``
    (a mapping of `MathVerifyConfig` options, or one) configures every math verifier it builds.
    """

    def __init__(
        self, *, verifier: str | None = None, workers: int | None = None, timeout: float = 1.0,
        keep_truncated: bool = False, math_verify: Mapping[str, Any] | MathVerifyConfig | None = None,
    ) -> None:
        if verifier:
            resolve_verifier_class(verifier)  # fail fast, listing the known names
        self.verifier, self.timeout, self.keep_truncated = verifier, timeout, keep_truncated
        self.math_config = math_config_of(math_verify)
        self._lightness: dict[str, bool] = {}
        self.workers = usable_cpus() if workers is None else max(1, workers)
        self._pool: OrderedPool | None = None

    @classmethod
    def for_config(cls, cfg: Any) -> Verification:
        """The verification a round config (or a `BudgetSpec`) asks for: its verifier, verify_workers,
        verify_timeout, keep_truncated and math_verify."""
        return cls(
            verifier=cfg.verifier, workers=cfg.verify_workers, timeout=cfg.verify_timeout,
            keep_truncated=bool(getattr(cfg, "keep_truncated", False)), math_verify=getattr(cfg, "math_verify", None),
        )

    def __enter__(self) -> Verification:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        _close_cache()

    def verdicts(self, records: Iterable[Mapping[str, Any]], *, in_process: bool = False) -> Iterator[dict]:
        """The verdict of each record, in order (records are streamed, a bounded number in flight)."""
        items = ((r, self.verifier, self.timeout, self.keep_truncated, self.math_config) for r in records)
        if in_process or self.workers == 1:
            for chunk in chunked(items, _MAX_CHUNK):
                yield from _verify_chunk(chunk)
            return
        if self._pool is None:
            # A pool not started yet: the first light records are verified here; the pool starts (for the rest)
            # at the first record of another verifier or past _LIGHT_IN_PROCESS records.
            first = None
            for n, item in enumerate(items):
                if n >= _LIGHT_IN_PROCESS or not self._light(item[0]):
                    first = item
                    break
                yield verify_one(*item)
            if first is None:
                return
            items = itertools.chain([first], items)
        if self._pool is None:
            # A chunk may take its records' full timeouts, with room for a loaded machine.
            self._pool = OrderedPool(
                _verify_chunk, _fallback, workers=self.workers, chunk_size=_MAX_CHUNK // 2,
                chunk_timeout=lambda n: 60.0 + 4.0 * self.timeout * n,
            )  # fmt: skip
        yield from self._pool.map(items)

    def _light(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record``'s verifier declares itself light (``light = True``: bounded, in-process safe)."""
        name = self.verifier or record.get("domain")
        if not isinstance(name, str) or not name:
            return True  # verify_one answers it without any verifier
        if name not in self._lightness:
            try:
                self._lightness[name] = getattr(resolve_verifier_class(name), "light", False) is True
            except Exception:  # an unknown or broken verifier: a worker reports it, not this process
                self._lightness[name] = False
        return self._lightness[name]

    def verified(self, records: Iterable[Mapping[str, Any]], *, in_process: bool = False) -> Iterator[dict]:
        """Each record (unchanged) plus its ``verdict``."""
        records = iter(records)
        held: deque[Mapping[str, Any]] = deque()

        def feed() -> Iterator[Mapping[str, Any]]:
            for record in records:
                held.append(record)
                yield record

        for verdict in self.verdicts(feed(), in_process=in_process):
            yield {**held.popleft(), "verdict": verdict}

    def verify_shard(self, shard: Shard, *, progress: Any = None) -> Shard:
        """Write `shard`'s verdict file from its samples joined with its problems; return the shard.

        Usable on its own (e.g. in a Ray task): it reads and writes only that shard's files.
        """
        problems = shard.load_problems()

        def joined() -> Iterator[dict[str, Any]]:
            for lineno, sample in enumerate(iter_jsonl(shard.samples), 1):
                problem = problems.get(sample.get("id"))
                if problem is None:
                    raise RecordError(f"{shard.samples}:{lineno}: field 'id': {sample.get('id')!r} is not in {shard.problems}")
                yield {**problem, **sample}

        samples = iter_jsonl(shard.samples)
        with JsonlWriter(shard.verdicts) as out:
            for sample, verdict in zip(samples, self.verdicts(joined()), strict=True):
                out.write({**sample, "verdict": verdict})
                if progress is not None:
                    progress.update(1)
        return shard


def verify_records(
    records: Iterable[Mapping[str, Any]],
    *,
    verifier: str | None = None,
    workers: int | None = None,
    timeout: float = 1.0,
    progress: bool = True,
    keep_truncated: bool = False,
) -> list[dict[str, Any]]:
    """Return each record (unchanged) plus a ``verdict`` dict, in input order (small inputs; stages stream).

    ``verifier`` overrides the per-record ``domain``. Anything that goes wrong with one record --
    the verifier raises, returns garbage, crashes or hangs its worker process -- gives that record
    ``ok: null`` with the reason; it never stops the batch. Unknown verifier names raise
    :class:`UnknownVerifierError` before any work starts.
    """
    records = list(records)
    names = {verifier} if verifier else {r.get("domain") for r in records} - {None, ""}
    for name in names:
        if isinstance(name, str):
            resolve_verifier_class(name)
    bar = tqdm(total=len(records), desc="verify", unit="rec", disable=not progress)
    try:
        with Verification(verifier=verifier, workers=workers, timeout=timeout, keep_truncated=keep_truncated) as verification:
            out = []
            for result in verification.verified(records, in_process=len(records) < _MIN_RECORDS_FOR_POOL):
                out.append(result)
                bar.update(1)
            return out
    finally:
        bar.close()


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts of ``ok`` / ``wrong`` / ``unverifiable`` verdicts and the ``total``."""
    counts = {"ok": 0, "wrong": 0, "unverifiable": 0, "total": 0}
    for record in records:
        ok = (record.get("verdict") or {}).get("ok")
        counts["ok" if ok is True else "wrong" if ok is False else "unverifiable"] += 1
        counts["total"] += 1
    return counts
