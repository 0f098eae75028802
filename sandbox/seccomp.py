"""A small seccomp filter for the sandbox: deny the kernel interfaces programs never need.

Namespaces and mounts (the usual first step of a container escape), ptrace and cross-process
memory access, kernel keyrings (state that outlives a program), BPF, perf events,
userfaultfd and io_uring (frequent exploit vectors), module loading, kexec, reboot and the
like fail with EPERM; ``clone3`` fails with ENOSYS so that libc falls back to ``clone``,
whose namespace flags can be inspected. Syscalls of another ABI (i386 via ``int 0x80``,
x32 on x86-64; 32-bit ARM on aarch64) kill the process. Everything else is allowed: this is
attack-surface reduction on top of the namespaces and uids, not an allow-list.

The classic-BPF program is built here and handed to ``bwrap --seccomp``. It exists for
x86-64 and aarch64; on any other architecture :func:`filter_program` raises
:class:`UnsupportedArchitecture` and the sandbox refuses to start (it never runs unfiltered).
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

# linux/filter.h, linux/seccomp.h, linux/audit.h
_LD_W_ABS, _JEQ_K, _JSET_K, _JGE_K, _RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_X32_SYSCALL_BIT = 0x40000000
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LOW, _OFF_ARG1_LOW, _OFF_ARG1_HIGH = 0, 4, 16, 24, 28
_SIGCHLD = 17  # the same on x86-64 and aarch64
_JOB_NAMESPACES = 0x00020000 | 0x40000000 | 0x08000000  # CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80

# x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl)
DENIED_X86_64 = {
    "ptrace": 101, "syslog": 103, "personality": 135, "vhangup": 153, "pivot_root": 155, "acct": 163,
    "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "memfd_create": 319,
}  # fmt: skip
# aarch64 uses the generic table (include/uapi/asm-generic/unistd.h): the same calls, other numbers
DENIED_AARCH64 = {
    "ptrace": 117, "syslog": 116, "personality": 92, "vhangup": 58, "pivot_root": 41, "acct": 89,
    "mount": 40, "umount2": 39, "swapon": 224, "swapoff": 225, "reboot": 142, "init_module": 105,
    "delete_module": 106, "quotactl": 60, "lookup_dcookie": 18, "kexec_load": 104, "add_key": 217,
    "request_key": 218, "keyctl": 219, "unshare": 97, "perf_event_open": 241, "fanotify_init": 262,
    "name_to_handle_at": 264, "open_by_handle_at": 265, "setns": 268, "process_vm_readv": 270,
    "process_vm_writev": 271, "finit_module": 273, "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "memfd_create": 279,
}  # fmt: skip


@dataclass(frozen=True)
class Abi:
    """What the filter needs to know about one architecture's system-call ABI."""

    audit_arch: int
    denied: dict[str, int]
    clone: int
    clone3: int
    rt_sigaction: int
    x32_bit: bool  # x86-64 only: numbers with this bit set are the x32 ABI


ABIS = {
    "x86_64": Abi(audit_arch=0xC000003E, denied=DENIED_X86_64, clone=56, clone3=435, rt_sigaction=13, x32_bit=True),
    "aarch64": Abi(
        audit_arch=0xC00000B7, denied=DENIED_AARCH64, clone=220, clone3=435, rt_sigaction=134, x32_bit=False
    ),
}


class UnsupportedArchitecture(RuntimeError):
    """There is no seccomp filter for this machine's architecture, so nothing may run."""


def host_machine() -> str:
    """The architecture the filter is built for (``os.uname().machine``); a seam for tests."""
    return os.uname().machine


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def filter_program(machine: str | None = None, *, supervisor: bool = False) -> bytes:
    """The filter for ``machine`` (default: this host) as ``struct sock_filter[]`` bytes.

    ``supervisor=True``: the outer filter, handed to bwrap for the worker and the per-job
    supervisors, which in addition may ``unshare`` a mount, network and IPC namespace and
    ``mount`` (a fresh /tmp per job). Each supervisor stacks the default, strict filter on
    top before it forks a candidate or judge process, and seccomp applies every filter.
    Raises :class:`UnsupportedArchitecture` where no filter exists: fail closed.
    """
    machine = machine or host_machine()
    abi = ABIS.get(machine)
    if abi is None:
        raise UnsupportedArchitecture(
            f"no seccomp filter for architecture {machine!r} (supported: {', '.join(sorted(ABIS))}); "
            "the sandbox refuses to run unfiltered"
        )
    eperm = _RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, abi.audit_arch, jt=1),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    if abi.x32_bit:
        prog += [_insn(_JGE_K, _X32_SYSCALL_BIT, jf=1), _insn(_RET_K, _RET_KILL_PROCESS)]
    prog += [
        _insn(_JEQ_K, abi.clone3, jf=1),
        _insn(_RET_K, _RET_ERRNO | errno.ENOSYS),
        # clone: deny if any namespace flag is set in its first argument (flags on both ABIs)
        _insn(_JEQ_K, abi.clone, jf=4),
        _insn(_LD_W_ABS, _OFF_ARG0_LOW),
        _insn(_JSET_K, _CLONE_NEW_FLAGS, jf=1),
        _insn(_RET_K, eperm),
        _insn(_RET_K, _RET_ALLOW),
        # rt_sigaction(SIGCHLD, act != NULL): a SIGCHLD ignored (or SA_NOCLDWAIT) makes the kernel
        # reap children itself, and their CPU time then reaches nobody's rusage. Reading the
        # disposition (act NULL) and every other signal stay allowed.
        _insn(_JEQ_K, abi.rt_sigaction, jf=8),
        _insn(_LD_W_ABS, _OFF_ARG0_LOW),
        _insn(_JEQ_K, _SIGCHLD, jf=4),
        _insn(_LD_W_ABS, _OFF_ARG1_LOW),
        _insn(_JEQ_K, 0, jf=3),
        _insn(_LD_W_ABS, _OFF_ARG1_HIGH),
        _insn(_JEQ_K, 0, jt=0, jf=1),
        _insn(_RET_K, _RET_ALLOW),
        _insn(_RET_K, eperm),
    ]
    if supervisor:
        prog += [
            _insn(_JEQ_K, abi.denied["unshare"], jf=4),
            _insn(_LD_W_ABS, _OFF_ARG0_LOW),
            _insn(_JSET_K, 0xFFFFFFFF & ~_JOB_NAMESPACES, jf=1),
            _insn(_RET_K, eperm),
            _insn(_RET_K, _RET_ALLOW),
            _insn(_JEQ_K, abi.denied["mount"], jf=1),
            _insn(_RET_K, _RET_ALLOW),
        ]
    for nr in sorted(abi.denied.values()):
        prog += [_insn(_JEQ_K, nr, jf=1), _insn(_RET_K, eperm)]
    prog.append(_insn(_RET_K, _RET_ALLOW))
    return b"".join(prog)
