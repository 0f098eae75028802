"""`data.train_teacher --init grow`: the bigger teacher starts as exactly the student's function."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from data.train_teacher import _layer_slots, grow_model
from tests.test_distill import make_model, make_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def untied_student(tmp_path_factory):
    """A 16 x 2 student with untied embeddings and intermediate 2 x hidden (the shipped model ties them)."""
    tok = make_tokenizer()
    out = tmp_path_factory.mktemp("grow") / "student"
    make_model(len(tok), hidden=16, layers=2, seed=5).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize(("slots", "expected"), [((4, 6), [0, 2, 3, 5]), ((2, 5), [0, 4]), ((1, 3), [0]),
                                                  ((3, 3), [0, 1, 2])])
def test_layer_slots_spread_evenly(slots, expected):
    assert _layer_slots(*slots) == expected


@pytest.mark.parametrize(("which", "hidden", "layers"), [("untied", 32, 5), ("shipped", 192, 6)])
def test_grown_teacher_computes_the_students_function(untied_student, which, hidden, layers):
    path = untied_student if which == "untied" else REPO / "data" / "model"
    student = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    teacher = grow_model(path, hidden, layers).eval()
    assert teacher.config.hidden_size == hidden and teacher.config.num_hidden_layers == layers
    assert teacher.num_parameters() > 2 * student.num_parameters()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, student.config.vocab_size, (3, 12), generator=g)
    with torch.no_grad():
        s, t = student(input_ids=ids).logits, teacher(input_ids=ids).logits
    # float reordering through wider matmuls and RMSNorm's eps only
    assert (s - t).abs().max().item() <= 1e-3 * max(1.0, s.abs().max().item())
    assert torch.equal(s.argmax(-1), t.argmax(-1))
    # the extra capacity is trainable: the zeroed writes receive gradients
    teacher.train()
    teacher(input_ids=ids, labels=ids).loss.backward()
    assert teacher.model.layers[1].self_attn.o_proj.weight.grad.abs().sum() > 0
    assert teacher.model.layers[0].mlp.down_proj.weight.grad[:, student.config.intermediate_size:].abs().sum() > 0


def test_grow_refuses_a_smaller_shape(untied_student):
    with pytest.raises(ValueError, match="must not be smaller"):
        grow_model(untied_student, 32, 1)
