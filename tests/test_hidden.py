"""Hidden-state distillation: the loss, the layer map, the trainer's projections, resume, and vLLM loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdp.distill.hidden import (
    PROJECTIONS_FILE,
    HiddenProjections,
    auto_layer_map,
    hidden_loss,
    resolve_layer_map,
)
from sdp.distill.kd import KDSFTTrainer
from tests.test_distill import make_model, make_tokenizer, sft_args, sft_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gap_pair(tmp_path_factory):
    """A teacher wider and deeper (32 x 4) than the student (16 x 2), sharing one tokenizer."""
    tok = make_tokenizer()
    root = tmp_path_factory.mktemp("hidden")
    make_model(len(tok), hidden=32, layers=4, seed=1).save_pretrained(root / "teacher")
    tok.save_pretrained(root / "teacher")
    make_model(len(tok), hidden=16, layers=2, seed=2).save_pretrained(root / "student")
    tok.save_pretrained(root / "student")
    return root / "teacher", root / "student", tok


def hidden_trainer(pair, out, hidden=None, **kw):
    teacher_dir, student_dir, tok = pair
    return KDSFTTrainer(
        model=str(student_dir), args=sft_args(out / "trainer", **kw), train_dataset=sft_dataset(),
        processing_class=tok, teacher_model=str(teacher_dir), alpha=0.5, temperature=2.0,
        hidden=hidden if hidden is not None else {"weight": 1.0, "layers": "auto", "loss": "mse"},
    )


# --- the loss -----------------------------------------------------------------------------------


def states(seed: int, shape=(2, 5, 8)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(3)]


LABELS = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 5, -100, -100]])


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_hidden_loss_is_zero_when_projected_states_equal_the_teachers(loss):
    teacher = states(0)
    assert hidden_loss([t.clone() for t in teacher], teacher, LABELS, loss).item() == pytest.approx(0.0, abs=1e-6)
    assert hidden_loss(states(1), teacher, LABELS, loss).item() > 0.1


def test_hidden_loss_by_hand_and_completion_tokens_only():
    teacher, student = states(0), states(1)
    mask = LABELS != -100
    mse = sum(((s - t) ** 2).mean(-1)[mask].sum() for s, t in zip(student, teacher)) / (mask.sum() * 3)
    assert hidden_loss(student, teacher, LABELS, "mse").item() == pytest.approx(mse.item(), rel=1e-6)
    cos = sum((1 - torch.nn.functional.cosine_similarity(s, t, dim=-1))[mask].sum() for s, t in zip(student, teacher))
    assert hidden_loss(student, teacher, LABELS, "cosine").item() == pytest.approx((cos / (mask.sum() * 3)).item(), rel=1e-5)
    # Prompt and padding positions do not count, whatever their states
    scrambled = [s.clone() for s in student]
    for s in scrambled:
        s[~mask] = torch.randn_like(s[~mask]) * 100
    assert hidden_loss(scrambled, teacher, LABELS, "mse").item() == pytest.approx(mse.item(), rel=1e-6)
    # The Trainer's token count normalises the sum
    n = int(mask.sum())
    assert hidden_loss(student, teacher, LABELS, "mse", num_items_in_batch=2 * n).item() == pytest.approx(mse.item() / 2)


def test_cosine_loss_ignores_scale():
    teacher, student = states(0), states(1)
    assert hidden_loss([3 * s for s in student], teacher, LABELS, "cosine").item() == pytest.approx(
        hidden_loss(student, teacher, LABELS, "cosine").item(), rel=1e-5
    )


def test_hidden_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        hidden_loss(states(0, (2, 5, 8)), states(1, (2, 5, 4)), LABELS)


# --- the layer map ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("student_layers", "teacher_layers", "expected"),
    [
        (2, 4, ((0, 0), (1, 2), (2, 4))),
        (4, 8, ((0, 0), (1, 2), (2, 4), (3, 6), (4, 8))),
        (4, 6, ((0, 0), (1, 2), (2, 3), (3, 4), (4, 6))),  # round(1.5) = 2, round(4.5) = 4
        (3, 3, ((0, 0), (1, 1), (2, 2), (3, 3))),
        (1, 5, ((0, 0), (1, 5))),
    ],
)
def test_auto_layer_map(student_layers, teacher_layers, expected):
    assert auto_layer_map(student_layers, teacher_layers) == expected


class _Cfg:
    def __init__(self, layers: int) -> None:
        self.num_hidden_layers = layers


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([[3, 1]], r"student layer 3 is out of range"),
        ([[1, 5]], r"teacher layer 5 is out of range"),
        ([[-1, 0]], r"student layer -1 is out of range"),
        ([[1, 2, 3]], r"is not a \[student_layer, teacher_layer\] pair"),
        ([[1]], r"is not a \[student_layer, teacher_layer\] pair"),
        ([1, 2], r"is not a \[student_layer, teacher_layer\] pair"),
        ([[1.0, 2]], r"is not a \[student_layer, teacher_layer\] pair"),
        ([[1, 2], [1, 2]], r"given twice"),
        ([], r"empty"),
        ("uniform", r"'auto'"),
    ],
)
def test_layer_map_validation_names_both_models(layers, message):
    with pytest.raises(ValueError, match=message) as err:
        resolve_layer_map(layers, _Cfg(2), _Cfg(4), "small-student", "big-teacher")
    assert "'small-student' (2 layers" in str(err.value) and "'big-teacher' (4 layers" in str(err.value)


def test_layer_map_explicit_pairs_pass_through():
    assert resolve_layer_map([[0, 0], [2, 4], [1, 3]], _Cfg(2), _Cfg(4)) == ((0, 0), (2, 4), (1, 3))


def test_trainer_rejects_out_of_range_layer_map_naming_both_models(gap_pair, tmp_path):
    teacher_dir, student_dir, _ = gap_pair
    with pytest.raises(ValueError, match="teacher layer 9 is out of range") as err:
        hidden_trainer(gap_pair, tmp_path, hidden={"layers": [[1, 9]]})
    assert str(teacher_dir) in str(err.value) and str(student_dir) in str(err.value)


# --- the trainer --------------------------------------------------------------------------------


def test_trainer_hidden_loss_zero_for_identity_projection_onto_an_identical_teacher(gap_pair, tmp_path):
    # Teacher = the student itself, projections = identity: projected states equal the teacher's
    _, student_dir, tok = gap_pair
    pair = (student_dir, student_dir, tok)
    trainer = hidden_trainer(pair, tmp_path, hidden={"weight": 5.0, "layers": "auto", "loss": "mse"})
    for proj in trainer.hidden_projections.proj:
        with torch.no_grad():
            proj.weight.copy_(torch.eye(proj.weight.shape[0]))
            proj.bias.zero_()
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()  # metrics go to the "train" log
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
    # (float32 round-off between two forward passes only; random projections give ~0.5 here)
    assert trainer._metrics["train"]["kd_hidden"][-1] == pytest.approx(0.0, abs=1e-5)
    # and the total is then exactly the output-KD loss (here CE, as the KL of a model with itself is 0)
    assert trainer._metrics["train"]["kd_kl"][-1] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.5 * trainer._metrics["train"]["kd_ce"][-1], rel=1e-5)


def test_gradients_reach_the_student_and_projections_but_not_the_teacher(gap_pair, tmp_path):
    trainer = hidden_trainer(gap_pair, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.compute_loss(trainer.model, dict(batch)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.hidden_projections.parameters())
    assert all(p.grad is None for p in trainer.teacher_model.parameters())
    # The hidden term itself reaches the student: its gradient changes with the hidden weight
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert grads
    trainer.model.zero_grad()
    trainer.hidden = type(trainer.hidden)(weight=0.0, layers=trainer.hidden.layers, loss=trainer.hidden.loss)
    trainer.compute_loss(trainer.model, dict(batch)).backward()
    assert any(not torch.allclose(grads[n], p.grad) for n, p in trainer.model.named_parameters() if n in grads)


def test_projections_train_in_the_optimizer_and_are_saved_beside_not_inside_the_model(gap_pair, tmp_path):
    trainer = hidden_trainer(gap_pair, tmp_path, max_steps=4)
    teacher_before = {k: v.clone() for k, v in trainer.teacher_model.state_dict().items()}
    proj_before = {k: v.clone() for k, v in trainer.hidden_projections.state_dict().items()}
    trainer.train()
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in trainer.hidden_projections.parameters())
    # zeroed after each optimizer step like the student's (else they would add up across steps)
    assert all(p.grad is None for p in trainer.hidden_projections.parameters())
    assert any(not torch.equal(v, trainer.hidden_projections.state_dict()[k]) for k, v in proj_before.items())
    assert all(torch.equal(v, trainer.teacher_model.state_dict()[k]) for k, v in teacher_before.items())
    logs = [h["kd_hidden"] for h in trainer.state.log_history if "kd_hidden" in h]
    assert len(logs) == 4 and logs[-1] < logs[0]

    saved = torch.load(tmp_path / PROJECTIONS_FILE, weights_only=True)  # <output_dir>/../
    assert saved["layer_map"] == [[0, 0], [1, 2], [2, 4]]
    assert (saved["student_hidden"], saved["teacher_hidden"]) == (16, 32)
    for k, v in trainer.hidden_projections.state_dict().items():
        assert torch.equal(saved["state_dict"][k], v)
    trainer.save_model(str(tmp_path / "checkpoint"))
    student_keys = load_file(str(gap_pair[1] / "model.safetensors")).keys()
    assert load_file(str(tmp_path / "checkpoint" / "model.safetensors")).keys() == student_keys


def test_resume_restores_projections_and_matches_an_uninterrupted_run(gap_pair, tmp_path):
    # The uninterrupted run saves a checkpoint at step 2; a fresh trainer resumes from it
    full = hidden_trainer(gap_pair, tmp_path / "full", max_steps=4, save_strategy="steps", save_steps=2)
    full.train()
    ckpt = tmp_path / "full" / "trainer" / "checkpoint-2"
    assert (ckpt / PROJECTIONS_FILE).is_file()
    assert load_file(str(ckpt / "model.safetensors")).keys() == load_file(str(gap_pair[1] / "model.safetensors")).keys()
    resumed = hidden_trainer(gap_pair, tmp_path / "resumed", max_steps=4, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 4
    for k, v in full.hidden_projections.state_dict().items():
        assert torch.allclose(resumed.hidden_projections.state_dict()[k], v, atol=1e-6), k
    for k, v in full.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[k], v, atol=1e-6), k
    # Without the projections' restore the run would differ: a fresh start ends elsewhere
    fresh = hidden_trainer(gap_pair, tmp_path / "fresh", max_steps=2)
    fresh.train()
    assert any(not torch.allclose(fresh.hidden_projections.state_dict()[k], v, atol=1e-6)
               for k, v in full.hidden_projections.state_dict().items())


def test_resume_without_projections_is_an_error(gap_pair, tmp_path):
    first = hidden_trainer(gap_pair, tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    first.train()
    ckpt = tmp_path / "trainer" / "checkpoint-2"
    (ckpt / PROJECTIONS_FILE).unlink()
    again = hidden_trainer(gap_pair, tmp_path, max_steps=4)
    with pytest.raises(ValueError, match=rf"no {PROJECTIONS_FILE}"):
        again.train(resume_from_checkpoint=str(ckpt))


def test_projections_module_maps_each_pair():
    module = HiddenProjections(((0, 0), (2, 3)), 4, 6)
    hs = [torch.randn(1, 3, 4) for _ in range(3)]
    out = module(hs)
    assert [o.shape for o in out] == [torch.Size([1, 3, 6])] * 2
    assert torch.allclose(out[1], module.proj[1](hs[2]))


# --- the train stage's checkpoint in vLLM -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.vllm
def test_train_stage_checkpoint_loads_in_vllm_without_projections(tiny_model, tmp_path):
    """The train stage with `kd.hidden`: vLLM loads its checkpoint; the projections lie beside it."""
    pytest.importorskip("vllm")

    from tests.conftest import build_wider_teacher, write_jsonl
    from sdp.stages.train import train

    teacher_dir = build_wider_teacher(tiny_model, tmp_path / "teacher")
    rdir = tmp_path / "round-1"
    rdir.mkdir()
    pairs = [{"prompt": f"Add {a} and 3.\n", "completion": f"The answer is \\boxed{{{a + 3}}}."} for a in range(8)]
    write_jsonl(rdir / "sft.jsonl", pairs)
    job = {
        "sft_path": str(rdir / "sft.jsonl"), "output": str(rdir / "checkpoint"), "work_dir": str(rdir / "trainer"),
        "stats": str(rdir / "train.stats.json"), "seed": 0, "init_model": str(tiny_model), "progress": False,
        "sft_args": {"max_steps": 2, "per_device_train_batch_size": 4, "report_to": "none", "save_strategy": "no"},
        "kd": {"teacher_model": str(teacher_dir), "alpha": 0.5, "temperature": 2.0,
               "hidden": {"weight": 1.0, "layers": "auto", "loss": "cosine"}},
    }
    stats = train(job)
    assert stats["steps"] == 2
    saved = torch.load(rdir / PROJECTIONS_FILE, weights_only=True)
    assert saved["layer_map"] == [[0, 0], [1, 2], [2, 3]] and saved["teacher_hidden"] == 96
    weights = load_file(str(rdir / "checkpoint" / "model.safetensors"))
    assert not any(96 in w.shape for w in weights.values())
    script = (
        "import json, sys\n"
        "from sdp.stages.engine import build_llm\n"
        "from tests.conftest import TINY_ENGINE_ARGS\n"
        "from vllm import SamplingParams\n"
        "llm = build_llm(sys.argv[1], TINY_ENGINE_ARGS, seed=0)\n"
        "out = llm.generate(['Add 1 and 3.\\n'], SamplingParams(max_tokens=8, temperature=0))\n"
        "print(json.dumps({'tokens': len(out[0].outputs[0].token_ids)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(rdir / "checkpoint")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["tokens"] >= 1
