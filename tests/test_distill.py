"""Soft-label distillation: the loss by hand, T and alpha, tokenizer checks, and training runs."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

from sdp.distill.config import HiddenKDConfig
from sdp.distill.kd import KDConfig, KDSFTTrainer, check_same_tokenizer, kd_loss

CHARS = list("0123456789+=abc ")


def make_tokenizer(chars: list[str] = CHARS) -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def make_model(vocab_size: int, hidden: int, layers: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """A saved teacher (wider, deeper) and a student, sharing one tokenizer."""
    tok = make_tokenizer()
    root = tmp_path_factory.mktemp("kd")
    teacher = make_model(len(tok), hidden=32, layers=2, seed=1)
    teacher.save_pretrained(root / "teacher")
    tok.save_pretrained(root / "teacher")
    student = make_model(len(tok), hidden=16, layers=1, seed=2)
    student.save_pretrained(root / "student")
    tok.save_pretrained(root / "student")
    return root / "teacher", root / "student", tok


def sft_dataset(n: int = 8) -> Dataset:
    rows = [{"prompt": f"{a}+{b}=\n", "completion": f"{a + b}<eos>"} for a in range(3) for b in range(3)]
    return Dataset.from_list(rows[:n])


def sft_args(out, **kw) -> SFTConfig:
    defaults = dict(
        output_dir=str(out),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-2,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    defaults.update(kw)
    return SFTConfig(**defaults)


# --- the loss by hand ---------------------------------------------------------------------------


def test_kd_loss_matches_hand_computation():
    # One sequence of 3 positions, vocab 2. Position 0 is prompt (its label is ignored), so the loss
    # covers the logits at positions 0 and 1, scored against labels[1] and labels[2]; position 2's
    # logits predict past the end and never count.
    student = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [-3.0, 9.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    alpha, T = 0.25, 2.0

    def softmax(xs):
        z = [math.exp(x) for x in xs]
        return [v / sum(z) for v in z]

    ce = (-math.log(softmax([0.0, 1.0])[1]) - math.log(softmax([2.0, 0.0])[0])) / 2
    kl = 0.0
    for s_row, t_row in (([0.0, 1.0], [1.0, 0.0]), ([2.0, 0.0], [0.0, 0.0])):
        p = softmax([x / T for x in t_row])
        q = softmax([x / T for x in s_row])
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    kl /= 2
    expected = (1 - alpha) * ce + alpha * T**2 * kl

    got, got_ce, got_kl = kd_loss(student, teacher, labels, alpha, T, return_parts=True)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got_ce.item() == pytest.approx(ce, rel=1e-6)
    assert got_kl.item() == pytest.approx(kl, rel=1e-6)


def random_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 6, 11, generator=g)
    teacher = torch.randn(2, 6, 11, generator=g) * 3
    labels = torch.randint(0, 11, (2, 6), generator=g)
    labels[0, :3] = -100
    labels[1, :2] = -100
    labels[1, -1] = -100
    return student, teacher, labels


def test_alpha_zero_is_plain_cross_entropy():
    student, teacher, labels = random_batch()
    ce = torch.nn.functional.cross_entropy(
        student[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    for T in (1.0, 2.0, 5.0):
        assert kd_loss(student, teacher, labels, 0.0, T).item() == pytest.approx(ce.item(), rel=1e-6)


def test_alpha_interpolates_linearly_and_alpha_one_is_scaled_kl():
    student, teacher, labels = random_batch(1)
    T = 3.0
    _, ce, kl = kd_loss(student, teacher, labels, 0.5, T, return_parts=True)
    for alpha in (0.0, 0.3, 0.7, 1.0):
        got = kd_loss(student, teacher, labels, alpha, T).item()
        assert got == pytest.approx((1 - alpha) * ce.item() + alpha * T**2 * kl.item(), rel=1e-6)
    # alpha = 1 ignores the hard labels entirely
    other_labels = labels.clone()
    other_labels[labels != -100] = (labels[labels != -100] + 1) % 11
    assert kd_loss(student, teacher, other_labels, 1.0, T).item() == pytest.approx(
        kd_loss(student, teacher, labels, 1.0, T).item(), rel=1e-6
    )


def test_temperature_scales_logits_before_the_kl():
    student, teacher, labels = random_batch(2)
    # Dividing every logit by T is the same as T=1 on pre-divided logits, times T^2
    for T in (0.5, 2.0, 4.0):
        got = kd_loss(student, teacher, labels, 1.0, T).item()
        ref = kd_loss(student / T, teacher / T, labels, 1.0, 1.0).item()
        assert got == pytest.approx(T**2 * ref, rel=1e-5)
    # and T does change the loss on these logits
    assert kd_loss(student, teacher, labels, 1.0, 1.0).item() != pytest.approx(
        kd_loss(student, teacher, labels, 1.0, 4.0).item(), rel=1e-3
    )
    # soft labels matching the student exactly give zero KL at every T
    assert kd_loss(student, student.clone(), labels, 1.0, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_prompt_and_padding_positions_do_not_count():
    student, teacher, labels = random_batch(3)
    base = kd_loss(student, teacher, labels, 0.5, 2.0).item()
    # Scramble logits whose next label is ignored: the loss must not move
    ignored = torch.zeros_like(labels, dtype=torch.bool)
    ignored[:, :-1] = labels[:, 1:] == -100
    ignored[:, -1] = True
    s2, t2 = student.clone(), teacher.clone()
    s2[ignored] = torch.randn_like(s2[ignored]) * 10
    t2[ignored] = torch.randn_like(t2[ignored]) * 10
    assert kd_loss(s2, t2, labels, 0.5, 2.0).item() == pytest.approx(base, rel=1e-6)


def test_num_items_in_batch_normalises_the_sum():
    student, teacher, labels = random_batch(4)
    n = int((labels[:, 1:] != -100).sum())
    mean = kd_loss(student, teacher, labels, 0.4, 2.0).item()
    assert kd_loss(student, teacher, labels, 0.4, 2.0, num_items_in_batch=2 * n).item() == pytest.approx(mean / 2)


def test_kd_loss_gradient_reaches_student_only():
    student, teacher, labels = random_batch(5)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    kd_loss(student, teacher.detach(), labels, 0.5, 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.5}, "kd.alpha"),
        ({"alpha": -0.1}, "kd.alpha"),
        ({"temperature": 0.0}, "kd.temperature"),
    ],
)
def test_kd_config_rejects_out_of_range_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KDConfig(**kwargs)


def test_kd_config_trainer_kwargs():
    cfg = KDConfig(alpha=0.3)
    assert cfg.trainer_kwargs("runs/teacher") == {"teacher_model": "runs/teacher", "alpha": 0.3, "temperature": 2.0}
    assert KDConfig(teacher_model="data/teacher").trainer_kwargs("other")["teacher_model"] == "data/teacher"
    with pytest.raises(ValueError, match="no teacher"):
        cfg.trainer_kwargs()
    with pytest.raises(TypeError):
        KDConfig(alfa=0.3)  # a misspelt key in the round config's `kd` mapping is an error


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"alfa": 0.3}, r"kd: unknown key\(s\) \['alfa'\]"),
        ({"alpha": "high"}, r"kd.alpha must be a number, got 'high'"),
        ({"alpha": True}, r"kd.alpha must be a number"),
        ({"alpha": 2}, r"kd.alpha must be in \[0, 1\]"),
        ({"temperature": -1}, r"kd.temperature must be > 0"),
        ({"teacher_model": 3}, r"kd.teacher_model must be a path"),
        ({"hidden": 1.0}, r"kd.hidden must be a mapping"),
        ({"hidden": {"wieght": 1}}, r"kd.hidden: unknown key\(s\) \['wieght'\]"),
        ({"hidden": {"weight": -1}}, r"kd.hidden.weight must be >= 0"),
        ({"hidden": {"loss": "l1"}}, r"kd.hidden.loss must be one of \['mse', 'cosine'\]"),
        ({"hidden": {"layers": "uniform"}}, r"kd.hidden.layers must be 'auto'"),
        ({"hidden": {"layers": [[1, 2, 3]]}}, r"kd.hidden.layers\[0\] must be a \[student_layer, teacher_layer\] pair"),
        ({"hidden": {"layers": [[1, "2"]]}}, r"kd.hidden.layers\[0\] must be a \[student_layer, teacher_layer\] pair"),
        ({"hidden": {"layers": [[0, 0], [-1, 2]]}}, r"kd.hidden.layers\[1\] = \[-1, 2\]: layer indices must be >= 0"),
        ({"hidden": {"layers": []}}, r"kd.hidden.layers is empty"),
        ([("alpha", 0.5)], r"kd must be a mapping"),
    ],
)
def test_kd_config_from_dict_names_the_bad_key_or_value(mapping, message):
    with pytest.raises(ValueError, match=message):
        KDConfig.from_dict(mapping)


def test_kd_config_from_dict_with_hidden():
    cfg = KDConfig.from_dict({"alpha": 0.2, "hidden": {"weight": 2, "layers": [[0, 0], [4, 6]], "loss": "cosine"}})
    assert cfg.hidden == HiddenKDConfig(weight=2.0, layers=((0, 0), (4, 6)), loss="cosine")
    assert cfg.hidden.to_dict() == {"weight": 2.0, "layers": [[0, 0], [4, 6]], "loss": "cosine"}
    assert KDConfig.from_dict({"hidden": {}}).hidden == HiddenKDConfig(weight=1.0, layers="auto", loss="mse")
    # The train stage's call: KDConfig(**job.kd).trainer_kwargs() carries the hidden options through
    kwargs = KDConfig(**{"teacher_model": "t", "hidden": {"layers": "auto"}}).trainer_kwargs()
    assert kwargs == {"teacher_model": "t", "alpha": 0.5, "temperature": 2.0, "hidden": HiddenKDConfig()}
    assert "hidden" not in KDConfig().trainer_kwargs("t")


def test_kd_config_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, sdp.distill.config, sdp.distill; sdp.distill.KDConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- tokenizer checks ---------------------------------------------------------------------------


def test_same_tokenizer_passes():
    check_same_tokenizer(make_tokenizer(), make_tokenizer())


def test_tokenizer_mismatch_names_both_models():
    other = make_tokenizer(CHARS[:-1] + ["x"])
    with pytest.raises(ValueError, match=r"Teacher model 'big-teacher' and student model 'small-student'") as err:
        check_same_tokenizer(other, make_tokenizer(), "big-teacher", "small-student")
    assert "'x'" in str(err.value)


def test_trainer_rejects_teacher_with_other_tokenizer(tiny_pair, tmp_path):
    teacher_dir, student_dir, tok = tiny_pair
    bad_dir = tmp_path / "bad-teacher"
    bad_tok = make_tokenizer(list("abcdefghijklmnop"))
    make_model(len(bad_tok), hidden=16, layers=1, seed=3).save_pretrained(bad_dir)
    bad_tok.save_pretrained(bad_dir)
    with pytest.raises(ValueError, match=r"bad-teacher.*student.*do not share a tokenizer"):
        KDSFTTrainer(
            model=str(student_dir),
            args=sft_args(tmp_path / "out"),
            train_dataset=sft_dataset(),
            processing_class=tok,
            teacher_model=str(bad_dir),
        )


def test_trainer_rejects_teacher_with_other_vocab_size(tiny_pair, tmp_path):
    _, student_dir, tok = tiny_pair
    wide = make_model(len(tok) + 8, hidden=16, layers=1, seed=4)
    with pytest.raises(ValueError, match="vocab_size"):
        KDSFTTrainer(
            model=str(student_dir),
            args=sft_args(tmp_path / "out"),
            train_dataset=sft_dataset(),
            processing_class=tok,
            teacher_model=wide,
            teacher_processing_class=tok,
        )


# --- the trainer --------------------------------------------------------------------------------


def test_trainer_alpha_zero_matches_sft_trainer_loss(tiny_pair, tmp_path):
    teacher_dir, student_dir, tok = tiny_pair
    args = sft_args(tmp_path / "out")
    sft = SFTTrainer(model=str(student_dir), args=args, train_dataset=sft_dataset(), processing_class=tok)
    kd = KDSFTTrainer(
        model=str(student_dir), args=args, train_dataset=sft_dataset(), processing_class=tok,
        teacher_model=str(teacher_dir), alpha=0.0,
    )
    batch = next(iter(sft.get_train_dataloader()))
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()  # completion-only labels
    with torch.no_grad():
        sft_loss = sft.compute_loss(sft.model, dict(batch))
        kd_zero = kd.compute_loss(kd.model, dict(batch))
        kd.alpha = 0.5
        kd_half = kd.compute_loss(kd.model, dict(batch))
    assert kd_zero.item() == pytest.approx(sft_loss.item(), rel=1e-5)
    assert kd_half.item() != pytest.approx(sft_loss.item(), rel=1e-3)


def test_trainer_trains_student_and_leaves_teacher_untouched(tiny_pair, tmp_path):
    teacher_dir, student_dir, tok = tiny_pair
    trainer = KDSFTTrainer(
        model=str(student_dir),
        args=sft_args(tmp_path / "out", max_steps=6),
        train_dataset=sft_dataset(),
        processing_class=tok,
        teacher_model=str(teacher_dir),
        alpha=1.0,
        temperature=2.0,
    )
    teacher_before = {k: v.clone() for k, v in trainer.teacher_model.state_dict().items()}
    student_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(not p.requires_grad for p in trainer.teacher_model.parameters())
    trainer.train()
    logs = [h for h in trainer.state.log_history if "kd_kl" in h]
    assert len(logs) == 6
    # alpha = 1: the student is pulled towards the teacher's soft labels
    assert logs[-1]["kd_kl"] < logs[0]["kd_kl"]
    assert all(torch.equal(v, trainer.teacher_model.state_dict()[k]) for k, v in teacher_before.items())
    assert any(not torch.equal(v, trainer.model.state_dict()[k]) for k, v in student_before.items())


# --- a teacher -> student round, end to end -----------------------------------------------------


@pytest.fixture(scope="module")
def kd_runs(tiny_model, problem_files, tmp_path_factory):
    """The same teacher-sampled round trained with hard labels only, and with hard + soft labels."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import build_tiny_model, round_args

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("kd-runs")
    # Same deterministic tokenizer as the student, other weights
    teacher = build_tiny_model(out / "teacher", seed=1)
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    runs = {}
    # The hard-label run skips held-out evaluation (0 problems): only its training is compared
    for name, extra in (("hard", ["--max_eval_problems", "0"]), ("soft", ["--kd", "{alpha: 0.7, temperature: 3.0}"])):
        args = round_args(tiny_model, problem_files, out, name, "--teacher_model", str(teacher), *extra)
        proc = subprocess.run([sys.executable, "-m", "sdp.round", *args], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[name] = out / name
    runs["teacher"] = teacher
    runs["job"] = json.loads((out / "soft" / "round-1" / "train.job.json").read_text())
    return runs


@pytest.mark.slow
@pytest.mark.vllm
def test_teacher_student_round_end_to_end(kd_runs, tiny_model):
    import json

    from safetensors.torch import load_file

    hard, soft, teacher = kd_runs["hard"], kd_runs["soft"], kd_runs["teacher"]
    metrics = {name: json.loads((run / "round-1" / "metrics.json").read_text()) for name, run in (("hard", hard), ("soft", soft))}
    # The teacher sampled, the student trained
    for m in metrics.values():
        assert m["sampler_model"] == str(teacher)
        assert m["kept"] > 0
    assert kd_runs["job"]["kd"] == {"alpha": 0.7, "temperature": 3.0, "teacher_model": str(teacher)}
    assert kd_runs["job"]["init_model"] == str(tiny_model)
    # Same verified teacher traces in both runs; only the loss differs
    assert (hard / "round-1" / "sft.jsonl").read_text() == (soft / "round-1" / "sft.jsonl").read_text()
    assert metrics["hard"]["train_loss"] != pytest.approx(metrics["soft"]["train_loss"], rel=1e-3)
    w_hard = load_file(str(hard / "round-1" / "checkpoint" / "model.safetensors"))
    w_soft = load_file(str(soft / "round-1" / "checkpoint" / "model.safetensors"))
    w_base = load_file(str(tiny_model / "model.safetensors"))
    w_teacher = load_file(str(teacher / "model.safetensors"))
    assert any(not torch.equal(w_soft[k], w_hard[k]) for k in w_soft)
    assert any(not torch.equal(w_soft[k], w_base[k]) for k in w_soft)
    # The student checkpoint is the student's architecture, not a copy of the teacher
    assert any(not torch.equal(w_soft[k], w_teacher[k]) for k in w_soft)
    assert "pass@1" in metrics["soft"]["eval"]["all"]
