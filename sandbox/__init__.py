"""Isolated, fast execution of untrusted Python: see ``sandbox.execution`` for the threat model.

>>> from sandbox import get_pool
>>> get_pool().run_script("print(6 * 7)").stdout
'42\\n'
"""

from sandbox.execution import ExecResult, Limits, SandboxUnavailable, Status
from sandbox.pool import SandboxPool, get_pool

__all__ = ["ExecResult", "Limits", "SandboxPool", "SandboxUnavailable", "Status", "get_pool"]
