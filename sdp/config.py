"""The round's configuration: one typed dataclass, parsed once with TRL's `TrlParser`.

`python -m sdp.round --config file.yaml --sampling '{n: 8}' --rounds 3`: the YAML file
replaces the defaults below, command-line flags override the YAML. The dict fields
(`engine_args`, `sampling`, `eval_sampling`, `sft`, `lora`, `kd`) are passed through to
vLLM's `LLM(...)`, vLLM's `SamplingParams(...)`, TRL's `SFTConfig(...)` and peft's
`LoraConfig(...)` untouched, so every option of those libraries is available without
being copied here. On the command line a dict field takes a YAML/JSON mapping that is
merged key by key into the configured one (`--sampling '{temperature: 0.7}'` keeps `n`);
`null` clears an optional one (`--lora null`).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

# Dict fields: typed `dict | str | None` so HfArgumentParser accepts a string on the
# command line (it keeps `str` for such unions), which `parse_config` then merges.
DICT_FIELDS = ("engine_args", "vllm_env", "sampling", "eval_sampling", "sft", "lora", "kd", "quantize", "math_verify")
BUDGET_FIELDS = ("sampling_budget", "wave_n", "max_n", "budget_samples", "budget_tokens", "rationalize",
                 "rationalize_template", "rationalize_n", "rationalize_reserve", "max_rationalized_share",
                 "pass_rate_filter")


def _dict(name: str, **kwargs: Any) -> Any:
    return field(default_factory=lambda: dict(kwargs), metadata={"help": _PASS_THROUGH_HELP[name]})


# Help text of the pass-through fields.
_PASS_THROUGH_HELP = {
    "engine_args": "Keyword arguments of vllm.LLM (tensor_parallel_size, gpu_memory_utilization, dtype, "
    "max_model_len, ...).",
    "vllm_env": "Environment variables of the sampler process (VLLM_CPU_KVCACHE_SPACE in GiB on CPU; "
    "VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps the engine core in the sampler process: 2 s instead of 13 s to start).",
    "sampling": "Keyword arguments of vllm.SamplingParams for training candidates (n, temperature, top_p, "
    "max_tokens, stop, ...). `seed` is the base of per-problem seeds (default: the run's seed).",
    "eval_sampling": "vllm.SamplingParams keyword arguments for held-out evaluation.",
    "sft": "Keyword arguments of trl.SFTConfig (output_dir is set by sdp).",
    "lora": "Keyword arguments of peft.LoraConfig; set to train LoRA adapters (merged into each checkpoint).",
    "kd": "Soft-label distillation: {alpha, temperature, teacher_model} for sdp.distill.kd.KDSFTTrainer.",
}


@dataclass
class RoundConfig:
    """Everything one run of `python -m sdp.round` needs; saved as `runs/<name>/config.yaml`."""

    name: str = field(default="default", metadata={"help": "Run name: outputs go to <output_dir>/<name>/."})
    output_dir: str = field(default="runs", metadata={"help": "Parent directory of run directories."})
    model: str = field(
        default="data/model",
        metadata={"help": "Base model (local path or hub id) trained each round; also the round-0 baseline."},
    )
    teacher_model: str | None = field(
        default=None,
        metadata={
            "help": "Model that samples the training candidates (teacher->student distillation with hard "
            "labels). Default: the current policy (checkpoint of the previous round), i.e. self-distillation."
        },
    )
    train_problems: list[str] = field(
        default_factory=lambda: ["data/math_train.jsonl", "data/code_train.jsonl"],
        metadata={"help": "Training problem sources: JSONL or parquet files, or `datasets` names/dirs."},
    )
    eval_problems: list[str] = field(
        default_factory=lambda: ["data/math_eval.jsonl", "data/code_eval.jsonl"],
        metadata={"help": "Held-out problem sources for evaluation (empty list: no evaluation)."},
    )
    train_split: str = field(
        default="train", metadata={"help": "Split used for `datasets` training sources."}
    )
    eval_split: str = field(
        default="test", metadata={"help": "Split used for `datasets` evaluation sources."}
    )
    max_train_problems: int | None = field(
        default=3000,
        metadata={"help": "Use a seeded random subset of this many training problems per round (None: all)."},
    )
    max_eval_problems: int | None = field(
        default=None, metadata={"help": "Use a fixed seeded subset of this many held-out problems (None: all)."}
    )
    round: int | None = field(
        default=None, metadata={"help": "Run (or resume) only this round; rounds before it must be complete."}
    )
    rounds: int = field(
        default=3,
        metadata={"help": "Run rounds until round R is complete (resuming an unfinished one first)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of sampling, subsets and training."})
    backend: Literal["vllm", "hf"] = field(
        default="vllm",
        metadata={
            "help": "Sampler: 'vllm' (offline vllm.LLM) or 'hf' (transformers generate, a slow fallback)."
        },
    )
    engine_args: dict | str | None = _dict(
        "engine_args",
        enforce_eager=True,
        enable_chunked_prefill=False,
        max_model_len=256,
        max_num_seqs=256,
        dtype="float32",
    )
    vllm_env: dict | str | None = _dict(
        "vllm_env", VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0"
    )
    sampling: dict | str | None = _dict("sampling", n=8, temperature=1.0, top_p=1.0, max_tokens=64)
    eval_sampling: dict | str | None = _dict("eval_sampling", n=8, temperature=1.0, top_p=1.0, max_tokens=64)
    eval_k: int | None = field(
        default=None, metadata={"help": "k of pass@k and maj@k (default: eval_sampling's n; must be <= n)."}
    )
    verifier: str | None = field(
        default=None, metadata={"help": "Verifier for every record, overriding each problem's `domain`."}
    )
    verify_timeout: float = field(default=5.0, metadata={"help": "Seconds allowed per verification."})
    keep_truncated: bool = field(default=False, metadata={"help": "Let completions cut at sampling.max_tokens "
                                 "(finish_reason length) be verified, kept and counted as passes; off: they fail."})
    math_verify: dict | str | None = field(default=None, metadata={"help": "Options of the math verifier "
        "(verifiers.MathVerifyConfig: think_scratch, withdrawals, conflicting_answers, step_check reject|flag|off, "
        "convert_units, ...), for every math verdict of the round: verify, waves, Ray, luck, evaluation. null: defaults."})
    luck_check: bool = field(default=True, metadata={"help": "After select, verify up to 4096 samples against "
                             "shuffled golds (the luck pass, sdp.stages.luck) and record it in metrics.json; off: skip it."})
    verify_workers: int | None = field(
        default=None,
        metadata={"help": "Verification worker processes (default: the CPUs this process may use; 1 = in-process)."},
    )
    shard_size: int = field(
        default=256,
        metadata={
            "help": "Problems per shard: sampling and verification write one file per shard, and a killed "
            "stage redoes only its unfinished shards."
        },
    )
    overlap_verify: bool = field(
        default=True,
        metadata={"help": "Verify finished shards while later shards are still being sampled."},
    )
    max_per_problem: int = field(
        default=1, metadata={"help": "Cap on distinct verified traces kept per problem (ReST-EM)."}
    )
    # -- where sampling is spent (docs/sampling.md; sdp.stages.budget)
    sampling_budget: Literal["fixed", "adaptive"] = field(default="adaptive", metadata={"help": "fixed: sampling.n "
        "per problem. adaptive: verified waves of wave_n per problem, a problem stops at max_per_problem distinct "
        "verified traces or max_n samples, the rest of the budget goes to the unsolved ones."})
    wave_n: int = field(default=2, metadata={"help": "adaptive: samples per active problem per wave."})
    max_n: int = field(default=32, metadata={"help": "adaptive: most samples one problem may get in a round."})
    budget_samples: int | None = field(default=None, metadata={"help": "adaptive: samples per round (None: "
                                       "sampling.n x the round's problems)."})
    budget_tokens: int | None = field(default=712_000, metadata={"help": "adaptive: sampled tokens per round, never "
                                      "exceeded (a wave draws at most tokens left // sampling.max_tokens; None: "
                                      "no token cap). The default is the fixed n=8 arm's mean per round in the "
                                      "sampling-budget experiment (docs/sampling.md)."})
    rationalize: bool = field(default=False, metadata={"help": "STaR rationalization: unsolved problems with a gold "
        "answer are sampled again with a hint, verified against the original problem, kept with the hint-free prompt."})
    rationalize_template: str = field(default="{prompt}\n(Hint: the final answer is {answer}.)", metadata={
        "help": "The hint prompt: {prompt} and {answer} (the gold), each once."})
    rationalize_n: int | None = field(default=None, metadata={"help": "Hint samples per unsolved problem (None: "
                                      "wave_n when adaptive, sampling.n when fixed)."})
    rationalize_reserve: float = field(default=0.1, metadata={"help": "adaptive + rationalize: share of the budgets "
                                       "held back from the waves for the hint pass."})
    max_rationalized_share: float | None = field(default=None, metadata={"help": "Cap of rationalized traces' share "
                                                 "of the SFT set (None: no cap); the first ones in shard order."})
    pass_rate_filter: list[float] | None = field(default=None, metadata={"help": "[low, high]: from round 2, skip "
        "problems whose previous-round solve rate is outside the band (edges inclusive; unseen problems are kept)."})
    init_from: Literal["base", "previous"] = field(
        default="previous",
        metadata={
            "help": "Start each round's training from the base model (STaR, ReST-EM) or the previous round."
        },
    )
    sft: dict | str | None = _dict(
        "sft",
        max_steps=300,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        max_length=256,
        gradient_checkpointing=False,  # TRL turns it on; this model needs no memory saved (same weights, ~1.4x faster)
    )
    lora: dict | str | None = field(default=None, metadata={"help": _PASS_THROUGH_HELP["lora"]})
    kd: dict | str | None = field(default=None, metadata={"help": _PASS_THROUGH_HELP["kd"]})
    quantize: dict | str | None = field(default=None, metadata={"help": "Quantization-aware training of the "
        "round's checkpoint: {scheme: int4_weight | int8_dynamic_act_int4_weight | int8_weight, group_size} "
        "(torchao QAT; with kd and no teacher, the teacher is the full-precision model the round starts from)."})
    # -- prompts (sdp.sources.templates): rendered identically for sampling, SFT and evaluation
    system_prompt: str | None = field(default=None, metadata={"help": "System prompt (a system turn with a chat "
                                      "template; plain text before the prompt without one)."})
    prompt_template: str = field(default="{prompt}", metadata={"help": "The user turn: `{prompt}` and any of the "
                                 "problem's non-gold fields, e.g. '{prompt}\\nPut your final answer within \\boxed{}.'"})
    few_shot: list | str | None = field(default=None, metadata={"help": "Few-shot examples: a list of {prompt, "
                                        "completion} mappings (or a JSONL path), rendered through the same template."})
    use_chat_template: str = field(default="auto", metadata={"help": "auto (the tokenizer's chat template when it "
                                   "has one), true or false."})
    # -- data hygiene and tracking
    decontaminate: Literal["none", "warn", "drop", "error"] = field(default="none", metadata={"help": "Normalised "
        "n-gram overlap of training vs held-out prompts, checked at start: warn, drop the training problem, or "
        "stop (sdp.sources.decontaminate)."})
    decontaminate_ngram: int = field(default=8, metadata={"help": "n of the decontamination n-grams."})
    decontaminate_min_overlap: float = field(default=0.0, metadata={"help": "Share of a training prompt's n-grams "
                                             "that must occur in a held-out prompt to count (0: any one)."})
    report_to: list[str] = field(default_factory=list, metadata={"help": "Trackers for each round's metrics, the "
                                 "round as step: tensorboard, wandb, mlflow (none by default)."})
    # -- executors and launchers (docs/scale.md)
    executor: Literal["local", "ray"] = field(default="local", metadata={"help": "Where sampling and verification "
        "run: 'local', or 'ray' (vLLM replicas as Ray actors, verification as Ray tasks)."})
    ray_address: str | None = field(default=None, metadata={"help": "executor ray: None starts a local Ray; 'auto' "
                                    "or 'ray://host:port' joins a cluster."})
    replicas: int = field(default=1, metadata={"help": "executor ray: vLLM sampling replicas."})
    launcher: Literal["process", "accelerate"] = field(default="process", metadata={"help": "Train stage: one child "
        "process, or `accelerate launch` with num_processes ranks."})
    num_processes: int = field(default=1, metadata={"help": "launcher accelerate: training processes (> 1 "
                               "without launcher accelerate is an error)."})
    accelerate_config: str | None = field(default=None, metadata={"help": "launcher accelerate: config file "
        "(configs/accelerate/*.yaml); None: DDP on this machine. Set without launcher accelerate: an error."})
    dtype: str = field(default="float32", metadata={"help": "dtype the student trains in (bfloat16 on GPUs)."})
    teacher_dtype: str | None = field(default=None, metadata={"help": "dtype of the KD teacher (None: the student's)."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})
    dry_run: bool = field(default=False, metadata={"help": "Print the resolved config, one rendered prompt per "
                          "domain, the problem counts and the shard plan, then exit (no model is loaded)."})

    def __post_init__(self) -> None:
        for name in DICT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, _load_mapping(name, value))
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.round is not None and self.round < 1:
            raise ValueError(f"round must be >= 1, got {self.round}")
        if self.kd is not None:
            from sdp.distill.config import KDConfig  # torch-free: names a bad key or value at start-up

            KDConfig.from_dict(self.kd)
            if not (self.kd.get("teacher_model") or self.teacher_model or self.quantize):
                raise ValueError("kd needs a teacher: set kd.teacher_model or teacher_model")
        if self.quantize is not None:
            from sdp.distill.quantize import QuantizeConfig

            QuantizeConfig.from_dict(self.quantize)
        if self.math_verify is not None:
            self.math_verify = check_math_verify(self.math_verify)
        if isinstance(self.few_shot, str):
            self.few_shot = _load_few_shot(self.few_shot)
        self.template  # builds and validates the PromptTemplate now, not at the first render
        from sdp.tracking import check_report_to

        self.report_to = check_report_to(self.report_to)
        if self.replicas < 1 or self.num_processes < 1:
            raise ValueError(f"replicas and num_processes must be >= 1, got {self.replicas}, {self.num_processes}")
        if self.launcher != "accelerate":  # launcher process trains in one process: these would be ignored
            if self.num_processes > 1:
                raise ValueError(f"num_processes {self.num_processes} needs launcher: accelerate (launcher "
                                 f"{self.launcher} trains in one process)")
            if self.accelerate_config:
                raise ValueError(f"accelerate_config {self.accelerate_config} needs launcher: accelerate "
                                 f"(launcher {self.launcher} trains in one process)")
        n = int((self.eval_sampling or {}).get("n", 1))
        if self.eval_k is not None and not 1 <= self.eval_k <= n:
            raise ValueError(f"eval_k={self.eval_k} must be between 1 and eval_sampling.n={n}")
        self._check_budget()

    def _check_budget(self) -> None:
        """Validate the sampling-budget fields (docs/sampling.md), naming the field."""
        from sdp.stages.rationalize import check_template

        if self.sampling_budget not in ("fixed", "adaptive"):
            raise ValueError(f"sampling_budget must be 'fixed' or 'adaptive', got {self.sampling_budget!r}")
        if self.wave_n < 1 or self.max_n < self.wave_n:
            raise ValueError(f"wave_n must be >= 1 and max_n >= wave_n, got wave_n={self.wave_n}, max_n={self.max_n}")
        for name in ("budget_samples", "budget_tokens", "rationalize_n"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")
        if not 0 <= self.rationalize_reserve < 1:
            raise ValueError(f"rationalize_reserve must be in [0, 1), got {self.rationalize_reserve}")
        share = self.max_rationalized_share
        if share is not None and not 0 <= share <= 1:
            raise ValueError(f"max_rationalized_share must be in [0, 1] or null, got {share}")
        try:
            check_template(self.rationalize_template)
        except ValueError as exc:
            raise ValueError(f"rationalize_template: {exc}") from None
        band = self.pass_rate_filter
        if band is not None:
            if len(band) != 2 or not 0 <= band[0] <= band[1] <= 1:
                raise ValueError(f"pass_rate_filter must be [low, high] with 0 <= low <= high <= 1, got {band}")
            self.pass_rate_filter = [float(band[0]), float(band[1])]
        if self.sampler_verifies and self.executor == "ray":
            raise ValueError("sampling_budget adaptive and rationalize run in the local sampler; executor ray "
                             "does not support them yet")

    @property
    def sampler_verifies(self) -> bool:
        """Whether the sampler verifies as it samples (adaptive waves or the hint pass need the verdicts)."""
        return self.sampling_budget == "adaptive" or self.rationalize

    @property
    def template(self) -> Any:
        """The `sdp.sources.templates.PromptTemplate` of the prompt fields."""
        from sdp.sources.templates import PromptTemplate

        return PromptTemplate.from_config(self.system_prompt, self.prompt_template, self.few_shot,
                                          self.use_chat_template)

    def template_fields(self) -> dict[str, Any]:
        """The prompt fields as a stage job carries them (empty for the default template)."""
        if self.template.is_default:
            return {}
        return {"system_prompt": self.system_prompt, "prompt_template": self.prompt_template,
                "few_shot": list(self.few_shot or []), "use_chat_template": self.use_chat_template}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_math_verify(options: Any) -> dict[str, Any]:
    """The `math_verify` section, checked against `MathVerifyConfig` (a ValueError names the bad key or value)."""
    from sdp.fieldcheck import FieldTypeError, check_section
    from verifiers._math_config import MathVerifyConfig, yaml_options

    if not isinstance(options, dict):
        raise FieldTypeError(f"math_verify: expected a mapping, got {options!r}")
    options = yaml_options(options)
    check_section("math_verify", MathVerifyConfig, options)  # `math_verify.step_chek: not a field ... (did you mean`
    try:
        MathVerifyConfig.from_mapping(options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"math_verify: {exc}") from None
    return options


def _load_few_shot(text: str) -> list:
    """`few_shot` given as a JSONL path, or as YAML/JSON text on the command line."""
    from pathlib import Path

    if text.strip().startswith("["):
        value = yaml.safe_load(text)
    else:
        from sdp.jsonl import read_jsonl

        value = read_jsonl(Path(text))
    if not isinstance(value, list):
        raise ValueError(f"few_shot: expected a list of {{prompt, completion}} mappings or a JSONL path, got {text!r}")
    return value


def _load_mapping(name: str, text: str) -> dict | None:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"--{name}: not a YAML/JSON mapping: {text!r} ({exc})") from exc
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"--{name}: expected a mapping like '{{key: value}}', got {text!r}")
    return value


def parse_config(argv: list[str] | None = None, cls: type = RoundConfig, prog: str | None = None,
                 description: str | None = None, file_cls: type | None = None) -> Any:
    """Parse `--config file.yaml` plus command-line overrides into a `cls` (a `RoundConfig` by default); the file
    may hold any field of `file_cls`, those `cls` lacks are ignored (`sdp.evaluate`)."""
    from trl import TrlParser

    from sdp.cli import DESCRIPTION, PROG, check_names, negated_help

    prog = prog or PROG
    args = list(argv) if argv is not None else sys.argv[1:]
    check_names(cls, args, file_cls, prog)
    parser = TrlParser([cls], prog=prog, description=description or DESCRIPTION, allow_abbrev=False)
    negated_help(parser)
    # TrlParser reads --config itself; declared here so that --help shows it.
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of config fields (replaces the defaults).")
    # Dict fields are kept as raw strings too, to be merged onto the configured mapping instead of replacing it.
    dict_fields = [n for n in DICT_FIELDS if n in {f.name for f in dataclasses.fields(cls)}]
    raw_cli: dict[str, str] = {}
    flags = {f"--{n}": n for n in dict_fields} | {f"--{n.replace('_', '-')}": n for n in dict_fields}
    for i, arg in enumerate(args[:-1]):
        if arg in flags:  # the last occurrence wins, as in argparse
            raw_cli[flags[arg]] = args[i + 1]
    # The file's keys that `cls` lacks come back as remaining strings (check_names accepted them for file_cls).
    # (cfg, the namespace holding `config`, the file's remaining strings, the command line's)
    parsed = parser.parse_args_and_config(args=args, return_remaining_strings=True, separate_remaining_strings=True)
    cfg, extra = parsed[0], parsed[-1]
    if extra:
        raise ValueError(f"unexpected argument(s) {' '.join(extra)}; `{prog} --help` lists the options")
    defaults = {a.dest: a.default for a in parser._actions}
    for name, text in raw_cli.items():
        override = _load_mapping(name, text)
        base = defaults.get(name)
        base = _load_mapping(name, base) if isinstance(base, str) else base
        merged = None if override is None else {**(base or {}), **override}
        setattr(cfg, name, merged)
    cfg.__post_init__()
    return cfg
