"""Experiment tracking of the round itself: each round's metrics to TensorBoard, W&B and/or MLflow.

`report_to: [tensorboard, wandb, mlflow]` (none by default) logs the flattened `metrics.json` of
every round (held-out pass@1/pass@k/maj@k per domain, kept, solve rate, counts, timings) with the
round as the step. Keys are `/`-joined paths: `eval/math/pass@1`, `timings/sample`, `kept`.

Where things go: TensorBoard event files in `<run>/tensorboard/`; W&B in `<run>/wandb/` (offline
when `WANDB_MODE=offline`, the project from `WANDB_PROJECT`, default `sdp`); MLflow to
`MLFLOW_TRACKING_URI`, default a store in the run directory (`<run>/mlflow.db` with SQLAlchemy
installed, else the file store `<run>/mlruns`). The W&B and MLflow run ids are kept
in `<run>/tracking.json`, so a resumed job appends to the same tracked run. Each library is
imported only when asked for; `is_*_available()` say which are installed.

    python -m sdp.tracking runs/<name> --report_to tensorboard   # (re)log a finished run's rounds
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

TRACKERS = ("tensorboard", "wandb", "mlflow")
STATE_FILE = "tracking.json"


def is_tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def is_wandb_available() -> bool:
    return importlib.util.find_spec("wandb") is not None


def is_mlflow_available() -> bool:
    return importlib.util.find_spec("mlflow") is not None


_AVAILABLE = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available, "mlflow": is_mlflow_available}
_PIP = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow-skinny (or mlflow)"}


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict as `a/b/c` keys (strings, None, NaN and `round` left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, name + "/"))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            if name != "round":
                out[name] = float(value)
    return out


def check_report_to(report_to: str | Sequence[str] | None) -> list[str]:
    """The trackers asked for, as a list; unknown names and missing libraries raise `ValueError`."""
    if report_to is None or report_to in ("none", ""):
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    names = [n for n in names if n != "none"]
    unknown = sorted(set(names) - set(TRACKERS))
    if unknown:
        raise ValueError(f"report_to: unknown tracker(s) {unknown}; known: {', '.join(TRACKERS)}")
    missing = [n for n in names if not _AVAILABLE[n]()]
    if missing:
        raise ValueError(
            f"report_to: {', '.join(missing)} not installed (pip install {' '.join(_PIP[n] for n in missing)})"
        )
    return names


class Tracker(Protocol):
    def log(self, metrics: Mapping[str, float], step: int) -> None: ...
    def close(self) -> None: ...


class TensorBoardTracker:
    """Scalars in `<run>/tensorboard/` (torch's SummaryWriter, as the SFT stage's tracker uses)."""

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any], state: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if config and "config_logged" not in state:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)
            state["config_logged"] = True

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """One W&B run per sdp run (resumed by id); mode and project from the usual WANDB_* variables."""

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any], state: dict) -> None:
        import os

        import wandb

        run_id = state.setdefault("wandb_run_id", uuid.uuid4().hex[:8])
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "sdp"),
            name=run_name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=dict(config),
            reinit="create_new",
        )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log({**metrics, "round": step}, step=step)

    def close(self) -> None:
        self.run.finish()


def mlflow_tracking_uri(run_dir: Path) -> str:
    """`MLFLOW_TRACKING_URI`, else a store in the run directory: SQLite when SQLAlchemy is there, else files."""
    import os

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if importlib.util.find_spec("sqlalchemy") is not None:
        return f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
    # mlflow-skinny has no SQLAlchemy; MLflow 3 keeps the file store behind this opt-in.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (run_dir / "mlruns").resolve().as_uri()


_MLFLOW_BAD = re.compile(r"[^\w./\- :]")


class MLflowTracker:
    """One MLflow run per sdp run (resumed by id), at `mlflow_tracking_uri(run_dir)`."""

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any], state: dict) -> None:
        import os

        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=mlflow_tracking_uri(run_dir))
        if "mlflow_run_id" not in state:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "sdp")
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            run = self.client.create_run(experiment_id, run_name=run_name)
            state["mlflow_run_id"] = run.info.run_id
            for key, value in flatten_params(config).items():
                self.client.log_param(run.info.run_id, key, value)
        self.run_id = state["mlflow_run_id"]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        # MLflow names allow letters, digits, _ - . / space and colon: pass@1 -> pass_at_1.
        batch = [Metric(_MLFLOW_BAD.sub("_", k.replace("@", "_at_")), v, now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self) -> None:
        # A finished run still takes metrics, so a resumed job logs its next rounds into it.
        self.client.set_terminated(self.run_id)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A config as flat string parameters (MLflow keeps at most 6000 characters per value)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = _MLFLOW_BAD.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = json.dumps(value, default=str)[:6000]
    return out


_CLASSES = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MLflowTracker}


class RoundTracker:
    """The trackers of one run; `log_round(metrics)` logs a round's metrics.json with its round as the step."""

    def __init__(
        self,
        report_to: str | Sequence[str] | None,
        run_dir: str | Path,
        *,
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.names = check_report_to(report_to)
        self.run_dir = Path(run_dir)
        self._state_path = self.run_dir / STATE_FILE
        self.state: dict[str, Any] = json.loads(self._state_path.read_text()) if self._state_path.exists() else {}
        self.trackers: list[Tracker] = []
        if self.names:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            self.trackers.append(_CLASSES[name](self.run_dir, run_name or self.run_dir.name, config or {}, self.state))
        self._save_state()

    def _save_state(self) -> None:
        if self.names:
            from sdp.rundir import atomic_write_json

            atomic_write_json(self._state_path, self.state)

    def log_round(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Log one round's metrics once (a resumed job does not log a round again); returns what was logged."""
        step = int(metrics["round"])
        logged = self.state.setdefault("logged_rounds", [])
        if not self.trackers or step in logged:
            return {}
        flat = flatten_metrics(metrics)
        for tracker in self.trackers:
            tracker.log(flat, step)
        logged.append(step)
        self._save_state()
        return flat

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []

    def __enter__(self) -> RoundTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def round_metrics(run_dir: str | Path) -> list[dict]:
    """Every `round-<k>/metrics.json` of a run directory, by round."""
    found = []
    for path in Path(run_dir).glob("round-*/metrics.json"):
        found.append(json.loads(path.read_text()))
    return sorted(found, key=lambda m: int(m["round"]))


def log_run(report_to: Iterable[str], run_dir: str | Path, config: Mapping[str, Any] | None = None) -> int:
    """Log all finished rounds of `run_dir` (e.g. a run made before tracking was on); returns the count."""
    rounds = round_metrics(run_dir)
    with RoundTracker(list(report_to), run_dir, config=config) as tracker:
        for metrics in rounds:
            tracker.log_round(metrics)
    return len(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdp.tracking", description="Log a run's rounds to trackers.")
    parser.add_argument("run_dir", help="runs/<name>")
    parser.add_argument("--report_to", nargs="+", required=True, choices=TRACKERS)
    args = parser.parse_args(argv)
    config_path = Path(args.run_dir) / "config.yaml"
    config = None
    if config_path.exists():
        import yaml

        config = yaml.safe_load(config_path.read_text())
    try:
        count = log_run(args.report_to, args.run_dir, config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"logged {count} rounds of {args.run_dir} to {', '.join(args.report_to)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
