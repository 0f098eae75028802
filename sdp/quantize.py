"""Post-training quantization (PTQ) of a saved model: `python -m sdp.quantize --model M --scheme S -o OUT`.

Loads the full-precision model, quantizes its linear layers with torchao (no training; see
`sdp.distill.quantize`), saves a torchao checkpoint that transformers and vLLM load, and prints
the sizes of both. Quantization-aware training is the train stage's `quantize` option instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sdp.distill.quantize import SCHEMES, QuantizeConfig, checkpoint_bytes, quantize_ptq, save_quantized
from sdp.logs import setup_logging


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> None:
    setup_logging()  # before torch and torchao are imported: their known noise is dropped
    parser = argparse.ArgumentParser(prog="python -m sdp.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="directory of the full-precision model")
    parser.add_argument("--scheme", required=True, choices=SCHEMES)
    parser.add_argument("--group_size", type=int, default=QuantizeConfig.group_size, help="channels per scale")
    parser.add_argument("-o", "--output", required=True, type=Path, help="directory of the quantized checkpoint")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(args.model) / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json there; not a saved model directory")
    if args.output.exists() and any(args.output.iterdir()):
        parser.error(f"-o {args.output}: exists and is not empty; choose a new directory")
    try:
        cfg = QuantizeConfig(scheme=args.scheme, group_size=args.group_size)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        quantize_ptq(model, cfg)
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    size = save_quantized(model, tokenizer, args.output, cfg)
    before = checkpoint_bytes(args.model)
    print(f"{args.model}: {_mb(before)} (full precision)")
    print(f"{args.output}: {_mb(size)} ({cfg.scheme}, group size {cfg.group_size}); {before / size:.2f}x smaller")


if __name__ == "__main__":
    main()
