"""Decontamination: training problems whose prompt shares a word n-gram with a held-out prompt.

As open-r1's `scripts/decontaminate.py`: prompts are normalised (Unicode NFKC, lower case, every
run of non-alphanumeric characters becomes one space) and split into words; a training prompt
is contaminated when one of its word n-grams (8 by default) is also an n-gram of a held-out
prompt. A prompt shorter than n words counts as one n-gram of its own length, so short exact
duplicates (after normalisation) are caught too. `min_overlap` > 0 asks for more: that share of
the training prompt's n-grams must occur in held-out prompts (1.0: every one), which spares
templated sets whose problems share phrasing but not content.

Scales to large sets: the held-out n-grams are indexed once (a dict from the n-gram's hash to
the first held-out prompt that has it); training problems are streamed through `Decontaminator.check`
one at a time. Modes: `warn` keeps everything and logs the count, `drop` removes the contaminated
problems, `error` raises `ContaminationError`. The report (`DecontaminationReport.to_dict()`)
holds the counts and a few examples, for the run's log and metrics.

    python -m sdp.sources.decontaminate data/math_train.jsonl --heldout data/math_eval.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

Mode = Literal["warn", "drop", "error"]
MODES = ("warn", "drop", "error")
_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> list[str]:
    """The words of `text` after NFKC, lower-casing and dropping punctuation."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()


def ngrams(text: str, n: int = 8) -> Iterator[str]:
    """The normalised word n-grams of `text` (the whole text when it has fewer than n words)."""
    words = normalize(text)
    if 0 < len(words) < n:
        yield " ".join(words)
        return
    for i in range(len(words) - n + 1):
        yield " ".join(words[i : i + n])


class ContaminationError(ValueError):
    """Training problems overlap the held-out set (mode `error`)."""

    def __init__(self, report: DecontaminationReport) -> None:
        super().__init__(report.message())
        self.report = report


@dataclass(frozen=True)
class Match:
    """A training problem's first n-gram that is also a held-out prompt's."""

    train_id: str
    heldout_id: str
    ngram: str
    train_prompt: str
    heldout_prompt: str
    overlap: float  # share of the training prompt's n-grams found among held-out n-grams


@dataclass
class DecontaminationReport:
    """Counts and examples of one check."""

    mode: str
    n: int
    min_overlap: float = 0.0
    heldout: int = 0
    heldout_ngrams: int = 0
    checked: int = 0
    contaminated: int = 0
    dropped: int = 0
    examples: list[Match] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> str:
        head = (
            f"decontamination ({self.n}-grams{f', overlap >= {self.min_overlap:g}' if self.min_overlap else ''}, "
            f"mode {self.mode}): {self.contaminated} of {self.checked} training "
            f"problems share an n-gram with the {self.heldout} held-out problems"
        )
        if self.dropped:
            head += f"; {self.dropped} dropped"
        lines = [head] + [
            f"  {m.train_id} ~ {m.heldout_id} ({100 * m.overlap:.0f}% of n-grams): {m.ngram!r}" for m in self.examples
        ]
        return "\n".join(lines)


class Decontaminator:
    """An index of held-out n-grams; `check` one training problem at a time."""

    def __init__(
        self,
        heldout: Iterable[Mapping[str, Any]],
        *,
        n: int = 8,
        min_overlap: float = 0.0,
        field_name: str = "prompt",
    ) -> None:
        if n < 1:
            raise ValueError(f"n-gram size must be >= 1, got {n}")
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be between 0 and 1, got {min_overlap}")
        self.n, self.min_overlap, self.field_name = n, min_overlap, field_name
        self._owner: dict[int, int] = {}  # hash of an n-gram -> index into _heldout
        self._heldout: list[tuple[str, str]] = []  # (id, prompt)
        for problem in heldout:
            index = len(self._heldout)
            self._heldout.append((str(problem.get("id")), problem[field_name]))
            for gram in ngrams(problem[field_name], n):
                self._owner.setdefault(hash(gram), index)

    @property
    def heldout_count(self) -> int:
        return len(self._heldout)

    @property
    def ngram_count(self) -> int:
        return len(self._owner)

    def _confirmed(self, gram: str) -> int | None:
        """The held-out prompt owning `gram`, ruling out a hash collision."""
        index = self._owner.get(hash(gram))
        if index is None or gram not in set(ngrams(self._heldout[index][1], self.n)):
            return None
        return index

    def check(self, problem: Mapping[str, Any]) -> Match | None:
        """The held-out overlap of `problem`'s prompt (with its first shared n-gram), or None."""
        text = problem[self.field_name]
        grams = list(ngrams(text, self.n))
        shared = [(gram, index) for gram in grams if (index := self._confirmed(gram)) is not None]
        if not shared or len(shared) < self.min_overlap * len(grams):
            return None
        gram, index = shared[0]
        heldout_id, heldout_text = self._heldout[index]
        return Match(str(problem.get("id")), heldout_id, gram, text, heldout_text, round(len(shared) / len(grams), 4))


def decontaminate(
    train: Iterable[Mapping[str, Any]],
    heldout: Iterable[Mapping[str, Any]] | Decontaminator,
    *,
    n: int = 8,
    mode: Mode = "warn",
    min_overlap: float = 0.0,
    max_examples: int = 5,
    log: bool = True,
) -> tuple[list[dict], DecontaminationReport]:
    """Check every training problem against the held-out set; (kept problems, report).

    `warn` keeps all and logs a warning when any overlap, `drop` keeps the clean ones,
    `error` raises `ContaminationError` (after checking all, so the report is complete).
    """
    if mode not in MODES:
        raise ValueError(f"decontaminate mode must be one of {', '.join(MODES)}, got {mode!r}")
    index = heldout if isinstance(heldout, Decontaminator) else Decontaminator(heldout, n=n, min_overlap=min_overlap)
    report = DecontaminationReport(mode=mode, n=index.n, min_overlap=index.min_overlap, heldout=index.heldout_count,
                                   heldout_ngrams=index.ngram_count)  # fmt: skip
    kept: list[dict] = []
    for problem in train:
        report.checked += 1
        match = index.check(problem)
        if match is not None:
            report.contaminated += 1
            if len(report.examples) < max_examples:
                report.examples.append(match)
            if mode == "drop":
                report.dropped += 1
                continue
        kept.append(dict(problem))
    if report.contaminated and mode == "error":
        raise ContaminationError(report)
    if log:
        logger.log(logging.WARNING if report.contaminated else logging.INFO, "%s", report.message())
    return kept, report


def main(argv: list[str] | None = None) -> int:
    """`python -m sdp.sources.decontaminate TRAIN... --heldout HELDOUT...`: print the report (JSON with --json)."""
    from sdp.sources.problems import ProblemError, load_problems

    parser = argparse.ArgumentParser(prog="python -m sdp.sources.decontaminate", description=main.__doc__)
    parser.add_argument("train", nargs="+", help="Training sources (sdp-format paths).")
    parser.add_argument("--heldout", nargs="+", required=True, help="Held-out sources.")
    parser.add_argument("--n", type=int, default=8, help="Word n-gram size (default 8).")
    parser.add_argument("--min-overlap", type=float, default=0.0, help="Share of n-grams that must be shared.")
    parser.add_argument("--examples", type=int, default=5, help="Examples to show.")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args(argv)
    try:
        train, heldout = load_problems(args.train), load_problems(args.heldout, split="test")
    except ProblemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _, report = decontaminate(train, heldout, n=args.n, mode="warn", min_overlap=args.min_overlap, max_examples=args.examples, log=False)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.message())
    return 0


if __name__ == "__main__":
    sys.exit(main())
