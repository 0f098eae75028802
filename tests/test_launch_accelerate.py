"""The train stage under `accelerate launch`: 2 CPU processes (gloo) against one, KD and hidden-state KD included."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sdp.launch.accelerate import launch_command, write_config
from sdp.stages.train import TrainJob, run_train, train

from .conftest import TINY_ENGINE_ARGS, build_wider_teacher

REPO = Path(__file__).resolve().parents[1]
PAIRS = [
    {"id": f"p{i}", "prompt": f"Say {i}\n", "completion": f"I say {i}. The answer is \\boxed{{{i}}}."}
    for i in range(8)
]
GLOBAL_BATCH = 4


def _job(tmp_path: Path, model: Path, per_device: int, **extra) -> TrainJob:
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return TrainJob(
        init_model=str(model),
        sft_path=str(sft),
        output=str(tmp_path / "checkpoint"),
        work_dir=str(tmp_path / "trainer"),
        stats=str(tmp_path / "train_stats.json"),
        seed=3,
        progress=False,
        sft_args={
            "num_train_epochs": 2,
            "per_device_train_batch_size": per_device,
            "learning_rate": 1e-3,
            "lr_scheduler_type": "constant",
            "logging_steps": 1,
            "report_to": "none",
            "save_strategy": "no",
            "max_length": 128,
        },
        kd={"alpha": 0.5, "temperature": 2.0, "teacher_model": str(model)},
        **extra,
    )


@pytest.mark.parametrize(
    ("config", "flag"),
    [
        ({"distributed_type": "MULTI_CPU", "num_machines": 1, "use_cpu": True}, True),
        ({"distributed_type": "MULTI_GPU", "num_machines": 1, "main_process_port": 1234}, False),
        (str(REPO / "configs/accelerate/multi_cpu.yaml"), True),
        (str(REPO / "configs/accelerate/zero3.yaml"), False),
    ],
)
def test_launch_command(tmp_path, config, flag):
    path, data = write_config(config, tmp_path / "train.job.json")
    cmd = launch_command("sdp.stages.train", tmp_path / "train.job.json", 2, path, data)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--config_file") + 1] == str(path) and Path(path).is_file()
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert ("--multi_gpu" in cmd) == flag  # MULTI_CPU without mpirun: accelerate's torchrun launcher
    assert ("--main_process_port" in cmd) == ("main_process_port" not in data)
    assert cmd[-3:] == ["-m", "sdp.stages.train", str(tmp_path / "train.job.json")]


def test_shipped_configs_load_and_bad_ones_are_named(tmp_path):
    names = sorted(p.stem for p in (REPO / "configs/accelerate").glob("*.yaml"))
    assert names == ["ddp", "fsdp", "multi_cpu", "zero2", "zero3"]
    for name in names:
        write_config(str(REPO / f"configs/accelerate/{name}.yaml"), tmp_path / "job.json")
    with pytest.raises(ValueError, match="unknown keys"):
        write_config({"distributed_type": "MULTI_CPU", "num_procs": 2}, tmp_path / "job.json")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        write_config(str(tmp_path / "nope.yaml"), tmp_path / "job.json")


def test_two_gloo_processes_match_one_and_the_checkpoint_loads_in_vllm(tiny_model, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    single = train(_job(one, tiny_model, per_device=GLOBAL_BATCH))
    two = tmp_path / "two"
    two.mkdir()
    job = _job(
        two,
        tiny_model,
        per_device=GLOBAL_BATCH // 2,
        launcher="accelerate",
        num_processes=2,
        accelerate_config=str(REPO / "configs/accelerate/multi_cpu.yaml"),
    )
    double = run_train(job, two / "train.job.json")

    assert double["processes"] == 2 and single["processes"] == 1
    assert double["steps"] == single["steps"] == 2 * len(PAIRS) // GLOBAL_BATCH
    assert double["examples"] == single["examples"] == len(PAIRS)
    assert double["final_loss"] == pytest.approx(single["final_loss"], rel=1e-3)
    from safetensors.torch import load_file

    w1 = load_file(str(one / "checkpoint" / "model.safetensors"))
    w2 = load_file(str(two / "checkpoint" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    original = load_file(str(tiny_model / "model.safetensors"))
    for key in w1:
        # Same updates up to float reordering (Adam amplifies it where gradients are ~0): compare norms.
        moved = (w1[key] - original[key]).norm().item()
        assert (w1[key] - w2[key]).norm().item() <= 0.05 * moved, key
    # Only the main process finished the checkpoint: no scratch directories or trainer files left.
    assert sorted(p.name for p in two.iterdir() if p.name.startswith(".")) == []
    assert not (two / "checkpoint" / "training_args.bin").exists()

    # The 2-process checkpoint is a plain model vLLM serves (own process: the session engine is in ours).
    code = (
        "import json, sys\n"
        "from vllm import LLM, SamplingParams\n"
        "llm = LLM(model=sys.argv[1], seed=0, **json.loads(sys.argv[2]))\n"
        "out = llm.generate(['Say 3\\n'], SamplingParams(max_tokens=8, temperature=0), use_tqdm=False)\n"
        "print('TOKENS', len(out[0].outputs[0].token_ids))\n"
    )
    pytest.importorskip("vllm")
    result = subprocess.run(
        [sys.executable, "-c", code, str(two / "checkpoint"), json.dumps(TINY_ENGINE_ARGS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tokens = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("TOKENS ")]
    assert tokens and 1 <= tokens[0] <= 8


@pytest.mark.slow
def test_two_gloo_processes_train_hidden_projections_like_one(tiny_model, tmp_path):
    """kd.hidden under the multi-process launcher: DDP averages the projections' gradients, so two
    ranks of half the batch end where one process does, and one projections file is written."""
    import torch

    from sdp.distill.hidden import PROJECTIONS_FILE, HiddenProjections

    teacher = build_wider_teacher(tiny_model, tmp_path / "teacher")
    kd = {"alpha": 0.5, "temperature": 2.0, "teacher_model": str(teacher),
          "hidden": {"weight": 1.0, "layers": "auto", "loss": "mse"}}
    one = tmp_path / "one"
    one.mkdir()
    job = _job(one, tiny_model, per_device=GLOBAL_BATCH)
    single = train(replace(job, kd=kd))
    two = tmp_path / "two"
    two.mkdir()
    job = _job(two, tiny_model, per_device=GLOBAL_BATCH // 2, launcher="accelerate", num_processes=2,
               accelerate_config=str(REPO / "configs/accelerate/multi_cpu.yaml"))
    double = run_train(replace(job, kd=kd), two / "train.job.json")

    assert double["processes"] == 2 and single["steps"] == double["steps"]
    assert double["final_loss"] == pytest.approx(single["final_loss"], rel=1e-3)
    p1 = torch.load(one / PROJECTIONS_FILE, weights_only=True)
    p2 = torch.load(two / PROJECTIONS_FILE, weights_only=True)
    assert p1["layer_map"] == p2["layer_map"] == [[0, 0], [1, 2], [2, 3]]
    # The projections' initial weights (seeded by the job's seed, as the trainer does), to measure how far they moved
    torch.manual_seed(job.seed)
    init = HiddenProjections(tuple(map(tuple, p1["layer_map"])), p1["student_hidden"], p1["teacher_hidden"]).state_dict()
    for key, w1 in p1["state_dict"].items():
        moved = (w1 - init[key]).norm().item()
        assert moved > 0, key  # they trained
        assert (w1 - p2["state_dict"][key]).norm().item() <= 0.05 * moved, key
    # Only the main process wrote: no stray copies of the projections or scratch directories
    assert sorted(p.name for p in two.rglob(PROJECTIONS_FILE)) == [PROJECTIONS_FILE]
    assert sorted(p.name for p in two.iterdir() if p.name.startswith(".")) == []
