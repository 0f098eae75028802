"""`python -m sdp.evaluate --model M [--config C]`: score one model on the held-out set, as a run of its own.

The evaluation is the round's baseline stage on its run directory: samples, verdicts and metrics
land in `<output_dir>/<name>/round-0/` (`eval/` shards, `metrics.json`), the table in `summary/`,
so a killed evaluation resumes with its finished shards, a changed `eval_sampling` re-evaluates
and any other change is refused (`sdp.fingerprint`), and `python -m sdp.inspect <run> --round 0`
shows the traces. Its options are the round's held-out fields only (`EvalConfig`); the config
file may be a round's, whose training keys are ignored.

    python -m sdp.evaluate --model runs/my/round-2/checkpoint --name my-round-2
    python -m sdp.evaluate --config configs/recipes/humaneval_eval.yaml --model M --dry_run
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, get_type_hints

from sdp.config import RoundConfig, parse_config
from sdp.dryrun import dry_run_report
from sdp.launch.process import INTERRUPTED
from sdp.logs import setup_logging
from sdp.round import (
    apply_rewind,
    check_model_path,
    check_run_config,
    preflight,
    print_summary,
    run_baseline,
    save_run_config,
)
from sdp.rundir import RunDir
from sdp.sources.problems import ProblemError, load_problems, subset

logger = logging.getLogger("sdp.evaluate")

PROG = "python -m sdp.evaluate"
DESCRIPTION = (
    "Score one model on the held-out set: a resumable run under <output_dir>/<name>/ (round-0/ holds the "
    "samples, verdicts and metrics; inspect it with `python -m sdp.inspect <output_dir>/<name> --round 0`). "
    "`--config FILE.yaml` may be a round's config; its training keys are ignored."
)
# The RoundConfig fields the evaluation reads: its options, help and defaults are the round's own.
EVAL_FIELDS = (
    "name", "output_dir", "model", "eval_problems", "eval_split", "max_eval_problems", "seed", "backend",
    "engine_args", "vllm_env", "eval_sampling", "eval_k", "verifier", "verify_timeout", "keep_truncated",
    "verify_workers", "shard_size", "overlap_verify", "system_prompt", "prompt_template", "few_shot",
    "use_chat_template", "progress", "dry_run",
)


# Where the round's help speaks of training rounds.
_HELP = {
    "model": "The model to evaluate (local path or hub id).",
    "eval_problems": "Held-out problem sources: JSONL or parquet files, or `datasets` names/dirs.",
    "seed": "Seed of sampling and of the held-out subset.",
}


def _shared_field(f: dataclasses.Field, hints: dict[str, Any]) -> tuple[str, Any, dataclasses.Field]:
    default: dict[str, Any] = ({"default_factory": f.default_factory} if f.default_factory is not dataclasses.MISSING
                               else {"default": f.default})
    metadata = {**f.metadata, "help": _HELP[f.name]} if f.name in _HELP else f.metadata
    return f.name, hints[f.name], dataclasses.field(metadata=metadata, **default)


_EvalFields = dataclasses.make_dataclass(
    "_EvalFields",
    [_shared_field(f, get_type_hints(RoundConfig)) for f in dataclasses.fields(RoundConfig) if f.name in EVAL_FIELDS],
)


@dataclasses.dataclass
class EvalConfig(_EvalFields):  # type: ignore[misc, valid-type]
    """The fields of `RoundConfig` an evaluation uses; validated by building the `RoundConfig` they describe."""

    def __post_init__(self) -> None:
        full = self.round_config()
        for name in self.names():  # the normalised values (mappings parsed, few_shot loaded)
            setattr(self, name, getattr(full, name))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def round_config(self) -> RoundConfig:
        """The round config of this evaluation (the training fields at their defaults, unused)."""
        return RoundConfig(**{name: getattr(self, name) for name in self.names()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_eval_config(argv: list[str] | None = None) -> EvalConfig:
    """`--config` (an evaluation's or a round's YAML) plus command-line overrides of the evaluation's fields."""
    cfg: EvalConfig = parse_config(argv, EvalConfig, prog=PROG, description=DESCRIPTION, file_cls=RoundConfig)
    return cfg


def evaluate_run(cfg: EvalConfig) -> Path | None:
    """Evaluate `cfg.model` in its run directory (resuming it), print the table; the run directory (None: dry run)."""
    try:
        eval_set = subset(load_problems(cfg.eval_problems, cfg.eval_split), cfg.max_eval_problems, cfg.seed)
    except ProblemError as exc:
        raise SystemExit(f"bad problem set: {exc}") from exc
    if not eval_set:
        raise SystemExit("eval_problems: no held-out problems to evaluate")
    check_model_path("model", cfg.model)
    root = Path(cfg.output_dir) / cfg.name
    if cfg.dry_run:
        print(dry_run_report(cfg.round_config(), root, [], eval_set, rounds=[], config=cfg.to_dict()))
        return None
    run = RunDir(root)
    pending = check_run_config(run, cfg)
    if pending or not run.done(0, "metrics"):
        preflight(run, cfg)
    if pending:
        apply_rewind(run, cfg, pending)
    save_run_config(run, cfg)
    logger.info("evaluation %s: %s on %d held-out problems%s", run.root, cfg.model, len(eval_set),
                " (done earlier)" if run.done(0, "metrics") else "")
    run_baseline(run, cfg.round_config(), eval_set, None)
    print_summary(run)
    return run.root


def main(argv: list[str] | None = None) -> None:
    """The command: a config error is one line, Ctrl-C says how to resume (no traceback either way)."""
    setup_logging()
    try:
        cfg = parse_eval_config(argv if argv is not None else sys.argv[1:])
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        evaluate_run(cfg)
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
