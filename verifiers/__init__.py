"""Verifier plugins: decide whether a completion provably solves a problem."""

from verifiers._math_config import MathVerifyConfig
from verifiers.base import Verdict, Verifier
from verifiers.registry import (
    BUILTIN_VERIFIERS,
    ENTRY_POINT_GROUP,
    UnknownVerifierError,
    available_verifiers,
    get_verifier,
)

__all__ = [
    "BUILTIN_VERIFIERS",
    "ENTRY_POINT_GROUP",
    "MathVerifyConfig",
    "UnknownVerifierError",
    "Verdict",
    "Verifier",
    "available_verifiers",
    "get_verifier",
]
