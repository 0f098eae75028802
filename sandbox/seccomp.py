"""A small seccomp filter for the sandbox: deny the kernel interfaces programs never need.

Namespaces and mounts (the usual first step of a container escape), ptrace and cross-process
memory access, kernel keyrings (state that outlives a program), BPF, perf events,
userfaultfd and io_uring (frequent exploit vectors), module loading, kexec, reboot and the
like fail with EPERM; ``clone3`` fails with ENOSYS so that libc falls back to ``clone``,
whose namespace flags can be inspected. Syscalls of another ABI (i386 via ``int 0x80``,
x32) kill the process. Everything else is allowed: this is attack-surface reduction on
top of the namespaces and uids, not an allow-list.

The classic-BPF program is built here and handed to ``bwrap --seccomp``; it exists for
x86-64 only (elsewhere :func:`filter_program` returns None and no filter is installed).
"""

from __future__ import annotations

import errno
import os
import struct

# linux/filter.h, linux/seccomp.h, linux/audit.h
_LD_W_ABS, _JEQ_K, _JSET_K, _JGE_K, _RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LOW = 0, 4, 16

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
}  # fmt: skip
_CLONE, _CLONE3 = 56, 435
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def filter_program() -> bytes | None:
    """The filter as ``struct sock_filter[]`` bytes, or None off x86-64."""
    if os.uname().machine != "x86_64":
        return None
    eperm = _RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, _AUDIT_ARCH_X86_64, jt=1),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFF_NR),
        _insn(_JGE_K, _X32_SYSCALL_BIT, jf=1),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_JEQ_K, _CLONE3, jf=1),
        _insn(_RET_K, _RET_ERRNO | errno.ENOSYS),
        # clone: deny if any namespace flag is set in its first argument
        _insn(_JEQ_K, _CLONE, jf=4),
        _insn(_LD_W_ABS, _OFF_ARG0_LOW),
        _insn(_JSET_K, _CLONE_NEW_FLAGS, jf=1),
        _insn(_RET_K, eperm),
        _insn(_RET_K, _RET_ALLOW),
    ]
    for nr in sorted(DENIED_X86_64.values()):
        prog += [_insn(_JEQ_K, nr, jf=1), _insn(_RET_K, eperm)]
    prog.append(_insn(_RET_K, _RET_ALLOW))
    return b"".join(prog)
