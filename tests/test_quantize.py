"""sdp.distill.quantize: torchao QAT prepare/convert, PTQ, saved checkpoints, the train-stage hook, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

from sdp.distill.quantize import (  # noqa: E402
    SCHEMES,
    QuantizeConfig,
    apply_quantize,
    check_model,
    checkpoint_bytes,
    convert_qat,
    finish_quantize,
    is_fake_quantized,
    is_quantized,
    kd_teacher,
    load_quantized,
    prepare_qat,
    quantize_ptq,
    quantized_linear_names,
    save_quantized,
)

TOKENS = [[5, 17, 42, 99, 3, 250, 61, 7, 120, 33, 8, 200]]


def _load(path: Path) -> LlamaForCausalLM:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def _logits(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(TOKENS)).logits


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "int3_weight"}, "unknown scheme 'int3_weight'"),
        ({"scheme": "INT4_WEIGHT"}, "unknown scheme"),
        ({"group_size": 0}, "positive integer"),
        ({"group_size": -32}, "positive integer"),
        ({"group_size": "32"}, "positive integer"),
        ({"group_size": True}, "positive integer"),
        ({"bits": 4}, r"unknown key\(s\) \['bits'\]"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantizeConfig.from_dict(kwargs)


def test_group_size_not_dividing_hidden_size_names_the_model(tiny_model: Path) -> None:
    model = _load(tiny_model)
    with pytest.raises(ValueError, match=rf"group_size 48 does not divide the hidden size 64 of model '{tiny_model}'"):
        prepare_qat(model, {"group_size": 48})
    with pytest.raises(ValueError, match="does not divide the hidden size 64"):
        quantize_ptq(model, {"scheme": "int8_weight", "group_size": 128})
    assert not is_fake_quantized(model) and not is_quantized(model)  # nothing was half-applied


def test_group_size_not_dividing_a_layer_names_the_layer() -> None:
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    model = LlamaForCausalLM(config)
    with pytest.raises(ValueError, match=r"in_features 96 of layer 'model.layers.0.mlp.down_proj'"):
        check_model(model, QuantizeConfig(group_size=64))
    check_model(model, QuantizeConfig(group_size=32))  # 32 divides 64 and 96


def test_the_output_head_and_embeddings_stay_full_precision(tiny_model: Path) -> None:
    model = _load(tiny_model)
    names = quantized_linear_names(model)
    assert "lm_head" not in names and len(names) == 7 * 2  # q k v o gate up down, 2 layers
    prepare_qat(model, {})
    convert_qat(model, {})
    assert type(model.lm_head.weight) is torch.nn.Parameter
    assert type(model.model.embed_tokens.weight) is torch.nn.Parameter
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied


@pytest.mark.parametrize("scheme", SCHEMES)
def test_convert_matches_fake_quant_and_round_trip_loads(tiny_model: Path, tmp_path: Path, scheme: str) -> None:
    cfg = QuantizeConfig(scheme=scheme, group_size=32)
    model = _load(tiny_model)
    full = _logits(model)
    prepare_qat(model, cfg)
    assert is_fake_quantized(model)
    fake = _logits(model)
    assert (fake - full).abs().max() > 1e-4, "fake quantization changed nothing"
    convert_qat(model, cfg)
    assert is_quantized(model) and not is_fake_quantized(model)
    real = _logits(model)
    torch.testing.assert_close(real, fake, atol=1e-4, rtol=1e-4)

    size = save_quantized(model, AutoTokenizer.from_pretrained(tiny_model), tmp_path / "q", cfg)
    assert size == checkpoint_bytes(tmp_path / "q") < checkpoint_bytes(tiny_model)
    saved = json.loads((tmp_path / "q" / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForCausalLM"]
    assert saved["quantization_config"]["quant_method"] == "torchao"
    for loaded in (load_quantized(tmp_path / "q"), AutoModelForCausalLM.from_pretrained(tmp_path / "q")):
        assert type(loaded) is LlamaForCausalLM and is_quantized(loaded)
        torch.testing.assert_close(_logits(loaded), real, atol=1e-5, rtol=1e-5)
    assert AutoTokenizer.from_pretrained(tmp_path / "q").get_vocab() == AutoTokenizer.from_pretrained(
        tiny_model
    ).get_vocab()


def test_ptq_equals_qat_convert_without_training(tiny_model: Path) -> None:
    ptq = quantize_ptq(_load(tiny_model), {"scheme": "int4_weight"})
    qat = convert_qat(prepare_qat(_load(tiny_model), {"scheme": "int4_weight"}), {"scheme": "int4_weight"})
    torch.testing.assert_close(_logits(ptq), _logits(qat))


def test_misuse_is_an_error(tiny_model: Path, tmp_path: Path) -> None:
    model = _load(tiny_model)
    with pytest.raises(ValueError, match="call prepare_qat first"):
        convert_qat(model, {})
    with pytest.raises(ValueError, match="no quantized weights"):
        save_quantized(model, None, tmp_path / "a", {})
    prepare_qat(model, {})
    with pytest.raises(ValueError, match="already quantized or prepared"):
        prepare_qat(model, {})
    with pytest.raises(ValueError, match="still fake-quantized"):
        save_quantized(model, None, tmp_path / "b", {})
    with pytest.raises(ValueError, match="not 'torchao'"):
        load_quantized(tiny_model)


def test_fake_quant_training_reduces_the_loss(tiny_model: Path) -> None:
    torch.manual_seed(0)
    model = prepare_qat(_load(tiny_model), {"scheme": "int8_dynamic_act_int4_weight"})
    model.train()
    batch = torch.tensor(TOKENS * 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    # The gain survives conversion: the really quantized model has the lower loss too.
    convert_qat(model, {"scheme": "int8_dynamic_act_int4_weight"})
    with torch.no_grad():
        assert model(input_ids=batch, labels=batch).loss.item() < 0.5 * losses[0]


def test_train_stage_hook_with_kd_from_the_full_precision_model(tiny_model: Path, tmp_path: Path) -> None:
    """apply_quantize before KDSFTTrainer, finish_quantize after: a loadable, smaller torchao checkpoint."""
    from datasets import Dataset
    from trl import SFTConfig

    from sdp.distill.kd import KDSFTTrainer

    assert apply_quantize(m := _load(tiny_model), None) is m and not is_fake_quantized(m)
    quantize = {"scheme": "int4_weight", "group_size": 32}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = TOKENS[0]
    dataset = Dataset.from_dict({"input_ids": [ids] * 8, "labels": [[-100] * 4 + ids[4:]] * 8})
    torch.manual_seed(0)
    model = apply_quantize(_load(tiny_model), quantize)
    teacher = kd_teacher({"alpha": 1.0}, None, str(tiny_model))
    assert teacher == str(tiny_model)
    args = SFTConfig(output_dir=str(tmp_path / "trainer"), max_steps=8, per_device_train_batch_size=4,
                     learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to="none",
                     use_cpu=True, disable_tqdm=True)
    trainer = KDSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                           teacher_model=teacher, alpha=1.0, temperature=1.0)
    trainer.train()
    # Pure KD from the full-precision self: the student's gap to its own full-precision outputs shrinks.
    kls = [h["kd_kl"] for h in trainer.state.log_history if "kd_kl" in h]
    assert kls[0] > 0 and kls[-1] < 0.5 * kls[0], kls
    stats = finish_quantize(trainer.model, quantize, tokenizer, tmp_path / "ckpt")
    assert stats == {"quantize": quantize, "checkpoint_bytes": checkpoint_bytes(tmp_path / "ckpt")}
    assert is_quantized(load_quantized(tmp_path / "ckpt"))


@pytest.mark.parametrize(
    ("kd", "teacher_model", "expected"),
    [
        (None, None, None),
        ({"alpha": 0.5}, None, "base"),
        ({"alpha": 0.5}, "sampler", "sampler"),
        ({"alpha": 0.5, "teacher_model": "kdt"}, "sampler", "kdt"),
    ],
)
def test_kd_teacher_defaults_to_the_full_precision_start(kd, teacher_model, expected) -> None:
    assert kd_teacher(kd, teacher_model, "base") == expected


def test_cli_quantizes_and_prints_sizes(tiny_model: Path, tmp_path: Path, capsys) -> None:
    from sdp.quantize import main

    main(["--model", str(tiny_model), "--scheme", "int8_weight", "--group_size", "64", "-o", str(tmp_path / "q")])
    out = capsys.readouterr().out
    size = checkpoint_bytes(tmp_path / "q")
    assert f"{size / 1e6:.2f} MB (int8_weight, group size 64)" in out
    assert f"{checkpoint_bytes(tiny_model) / 1e6:.2f} MB (full precision)" in out
    assert is_quantized(load_quantized(tmp_path / "q"))
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(tiny_model), "--scheme", "int4_weight", "--group_size", "24", "-o", str(tmp_path / "r")])
    assert exc.value.code == 2
    assert "does not divide the hidden size 64" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
