"""The Ray executor on a local 2-CPU Ray: same samples, verdicts and SFT set as local; a killed replica."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from sdp.jsonl import read_jsonl
from sdp.shards import plan_shards
from sdp.stages.sample import SampleJob, SampleTask, sample_shards
from sdp.stages.select import select
from sdp.stages.verify import Verification

from .conftest import TINY_ENGINE_ARGS, needle_problems

ray = pytest.importorskip("ray")

from sdp.launch.ray_executor import RayOptions, RaySampler, init_ray, sample_on_ray, verify_on_ray  # noqa: E402

SAMPLING = {"n": 3, "temperature": 1.0, "max_tokens": 16}
# The random tiny model never stops (every completion ends at max_tokens): its cut completions are verified.
SEED, TAG = 0, "train-1"


@pytest.fixture(scope="module")
def local_ray():
    started = init_ray(RayOptions(num_cpus=2))
    yield
    if started:
        ray.shutdown()


def _problems(count: int) -> list[dict]:
    math = [{"id": f"m-{i}", "domain": "math", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(3)]
    return needle_problems("t", count - len(math)) + math


def _job(root: Path, model: Path) -> SampleJob:
    return SampleJob(
        model=str(model),
        tasks=(SampleTask(shards=str(root), sampling=SAMPLING, seed_tag=TAG),),
        engine_args=TINY_ENGINE_ARGS,
        seed=SEED,
        progress=False,
    )


def _files(root: Path, kind: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / kind).glob("shard-*.jsonl"))}


@pytest.fixture(scope="module")
def reference(vllm_engine, tmp_path_factory):
    """The local executor's shard set: samples on the session engine, verdicts in this process."""
    root = tmp_path_factory.mktemp("local")
    plan = plan_shards(_problems(12), root, shard_size=2)
    list(sample_shards(vllm_engine, plan.shards, SAMPLING, SEED, seed_tag=TAG, progress=False))
    with Verification(workers=1, keep_truncated=True) as verification:
        for shard in plan.shards:
            verification.verify_shard(shard)
    return root


def test_ray_with_two_replicas_matches_local(reference, tiny_model, tmp_path, local_ray):
    plan = plan_shards(_problems(12), tmp_path, shard_size=2)
    overlapped, calls = [], []

    def verify_next() -> bool:  # what the round does while sampling runs: verify a finished shard
        calls.append(1)
        ready = [s for s in plan.shards if s.done("samples") and not s.done("verdicts")]
        if ready:
            with Verification(workers=1, keep_truncated=True) as verification:
                overlapped.append(verification.verify_shard(ready[0]).index)
        return bool(ready)

    options = RayOptions(replicas=2, env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    report = sample_on_ray(_job(tmp_path, tiny_model), options, work=verify_next)
    assert report.shards == plan.count and report.replicas_lost == 0 and report.passes == 1
    assert _files(tmp_path, "samples") == _files(reference, "samples")
    assert calls  # called while the replicas ran (how many shards it verified then depends on timing)
    left = plan.count - len(overlapped)
    assert verify_on_ray(plan.shards, keep_truncated=True, options=RayOptions(), check_sandbox=False) == left
    assert _files(tmp_path, "verdicts") == _files(reference, "verdicts")
    kept = [(r["id"], r["completion"]) for r in select(plan.iter_records("verdicts"), 2).kept]
    want = [(r["id"], r["completion"]) for r in select(
        (r for f in sorted((reference / "verdicts").glob("*.jsonl")) for r in read_jsonl(f)), 2).kept]  # fmt: skip
    assert kept == want and kept  # the SFT set's pairs, in order
    # A finished shard set is not touched again.
    assert verify_on_ray(plan.shards, keep_truncated=True, options=RayOptions(), check_sandbox=False) == 0


def test_a_replica_killed_mid_shard_is_redone_with_identical_results(reference, tiny_model, tmp_path, local_ray):
    plan = plan_shards(_problems(12), tmp_path, shard_size=1)
    sampler = RaySampler(_job(tmp_path, tiny_model), RayOptions(replicas=2, restarts=0))
    victim = sampler.pids()[0]
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(report=sampler.run()))
    worker.start()
    deadline = time.monotonic() + 300  # safety only: the kill waits on the first written shard
    while not any(s.done("samples") for s in plan.shards) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not plan.complete("samples"), "sampling finished before the kill; use more shards"
    os.kill(victim, signal.SIGKILL)
    worker.join(timeout=300)
    sampler.close()
    report = result["report"]
    assert report.replicas_lost == 1 and report.passes >= 2 and report.redone >= 1
    assert plan.complete("samples")
    # Same problems and seeds in shards of 1: the concatenation equals the local shards of 2.
    got = [r for s in plan.shards for r in read_jsonl(s.samples)]
    want = [r for f in sorted((reference / "samples").glob("*.jsonl")) for r in read_jsonl(f)]
    assert got == want


def test_sandbox_check_runs_on_every_node_and_names_a_broken_one(local_ray, monkeypatch):
    import socket

    import sandbox.execution
    from sdp.launch.ray_executor import _check_sandbox, check_nodes_sandbox

    check_nodes_sandbox()  # this node's bwrap works (the code verifier tests need it too)

    def broken(*args, **kwargs):
        raise sandbox.execution.SandboxUnavailable("bubblewrap is not available: no user namespaces")

    monkeypatch.setattr(sandbox.execution, "Worker", broken)
    message = _check_sandbox()
    assert message == (
        f"node {socket.gethostname()}: the code sandbox (bwrap) does not start: "
        "bubblewrap is not available: no user namespaces"
    )
