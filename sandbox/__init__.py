"""Isolated, fast execution of untrusted Python (bubblewrap + a warm pool of forking workers).

Protects against: network access, seeing or signalling host processes, reading host files
(home, /tmp, project, /etc) or environment, writing outside a private /tmp, fork/thread/
memory bombs, runaway CPU, output floods, leftovers between programs, and forged test
verdicts; a seccomp filter trims the kernel attack surface. Does not protect against: kernel
exploits through allowed syscalls, side/covert channels,
reading world-readable system files, using resources up to the limits. The full statement
is in ``sandbox.execution``; the design in ``docs/sandbox.md``. Nothing ever runs
unsandboxed: if bubblewrap cannot start, :class:`SandboxUnavailable` is raised.

>>> from sandbox import get_pool
>>> get_pool().run_script("print(6 * 7)").stdout
'42\\n'
"""

from sandbox.execution import ExecResult, Limits, SandboxUnavailable, Status
from sandbox.pool import SandboxPool, get_pool

__all__ = ["ExecResult", "Limits", "SandboxPool", "SandboxUnavailable", "Status", "get_pool"]
