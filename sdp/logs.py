"""The one logging set-up of sdp's commands and stage processes, with known third-party noise filtered at the source.

Every command (`python -m sdp.round`, `sdp.evaluate`, `sdp.verify`) and every stage child calls
`setup_logging()` first thing in its `main()`, never at import. Besides the format it installs:

- a filter on each logger that emits a known, harmless message (`NOISE`). A logger's own filters
  see every record created on it whatever handlers are configured later (vLLM's and torch's
  logging set-ups add their own handlers but keep filters), so the lines disappear at the source;
- `warnings` filters for known deprecation warnings raised inside the libraries (`WARNING_NOISE`).

What is filtered is listed with the reason it can be ignored; anything else is printed as before.
C++ messages (`[W... utils.cpp] Warning: NUMA binding ...`) are written by the libraries' native code
straight to the process's stderr and are not filtered.
"""

from __future__ import annotations

import logging
import re
import warnings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# (logger name, message pattern): printed on every import by the libraries, about features sdp does not use.
NOISE: tuple[tuple[str, str], ...] = (
    # torchao's prebuilt kernels for other torch builds/GPUs (mxfp8, CUTLASS sm90a); its QAT code paths sdp uses
    # are pure PyTorch.
    ("torchao", r"^Failed to load .*/torchao/_C\w*\..*\.so"),
    # torchao registers its enums with torch's pytree; torch says that is now unnecessary.
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported by torch\.compile"),
    # vLLM on CPU: no Triton backend, which the CPU platform does not use.
    ("vllm.triton_utils.importing", r"^Triton (is installed|not installed)"),
)
# (warning category, message pattern) raised inside third-party code on import.
WARNING_NOISE: tuple[tuple[type[Warning], str], ...] = (
    # vLLM's Triton dispatcher inspects torch.distributed's attributes, touching a deprecated alias.
    (FutureWarning, r"`torch\.distributed\.reduce_op` is deprecated"),
)


class _Drop(logging.Filter):
    """Drops the records of one logger whose message matches a pattern."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def filter_noise() -> None:
    """Install the `NOISE` and `WARNING_NOISE` filters (idempotent)."""
    for name, pattern in NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_Drop(pattern))
    for category, pattern in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern, category=category)


def setup_logging(level: int = logging.INFO, fmt: str = FORMAT) -> None:
    """Log to stderr in sdp's format, minus the known third-party noise."""
    logging.basicConfig(level=level, format=fmt)
    filter_noise()
