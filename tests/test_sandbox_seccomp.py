"""The seccomp filter, for each supported ABI, run through a classic-BPF interpreter; and the
sandbox refusing to start on an architecture without a filter."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import struct

import pytest

import sandbox.seccomp as seccomp
from sandbox import SandboxPool, SandboxUnavailable

ALLOW, KILL = 0x7FFF0000, 0x80000000
EPERM, ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
AUDIT_I386, AUDIT_ARM = 0x40000003, 0x40000028


def run_filter(program: bytes, arch: int, nr: int, arg0: int = 0, arg1: int = 0) -> int:
    """Evaluate a seccomp classic-BPF program on ``struct seccomp_data`` (only what it uses)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, arg1, 0, 0, 0, 0)
    insns = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            (acc,) = struct.unpack_from("=I", data, k)
        elif code == 0x06:  # ret k
            return k
        elif code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            hit = acc == k if code == 0x15 else acc >= k if code == 0x35 else bool(acc & k)
            pc += jt if hit else jf
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
        pc += 1


CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD, CLONE_THREAD_FLAGS = 0x10000000, 0x40000000, 17, 0x3D0F00
# (machine, syscall name or number, arg0, expected action)
CASES = [
    ("x86_64", 0, 0, ALLOW),  # read
    ("x86_64", 57, 0, ALLOW),  # fork
    ("x86_64", "clone", SIGCHLD, ALLOW),
    ("x86_64", "clone", CLONE_THREAD_FLAGS, ALLOW),  # a thread
    ("x86_64", "clone", CLONE_NEWUSER | SIGCHLD, EPERM),
    ("x86_64", "clone", CLONE_NEWNET, EPERM),
    ("x86_64", "clone3", 0, ENOSYS),
    ("x86_64", 0x40000000 + 1, 0, KILL),  # x32 write
    ("aarch64", 63, 0, ALLOW),  # read
    ("aarch64", 64, 0, ALLOW),  # write
    ("aarch64", 101, 0, ALLOW),  # nanosleep (101 is ptrace on x86-64: the tables are per ABI)
    ("aarch64", "clone", SIGCHLD, ALLOW),
    ("aarch64", "clone", CLONE_THREAD_FLAGS, ALLOW),
    ("aarch64", "clone", CLONE_NEWUSER | SIGCHLD, EPERM),
    ("aarch64", "clone3", 0, ENOSYS),
]
# (machine, arg0, arg1, expected): rt_sigaction may not set SIGCHLD's disposition (auto-reaped
# children would take their CPU time with them); reading it, and any other signal, is allowed.
SIGACTION_CASES = [
    (machine, sig, act, EPERM if sig == SIGCHLD and act else ALLOW)
    for machine in ("x86_64", "aarch64")
    for sig in (2, 14, SIGCHLD, SIGCHLD | (1 << 32), 15)
    for act in (0, 0x7FFD1000, 1 << 40)
]


@pytest.mark.parametrize(("machine", "call", "arg0", "expected"), CASES)
def test_filter_decisions(machine, call, arg0, expected):
    abi = seccomp.ABIS[machine]
    nr = {"clone": abi.clone, "clone3": abi.clone3}.get(call, call)
    assert run_filter(seccomp.filter_program(machine), abi.audit_arch, nr, arg0) == expected


@pytest.mark.parametrize("machine", sorted(seccomp.ABIS))
def test_the_supervisor_filter_allows_only_the_job_namespaces_and_mount(machine):
    """bwrap's outer filter lets a job's supervisor unshare mount, network and IPC namespaces
    and mount its /tmp; the strict filter stacked per job denies both, as before."""
    abi = seccomp.ABIS[machine]
    outer, strict = seccomp.filter_program(machine, supervisor=True), seccomp.filter_program(machine)
    unshare, mount = abi.denied["unshare"], abi.denied["mount"]
    job_ns = 0x00020000 | CLONE_NEWNET | 0x08000000
    assert run_filter(outer, abi.audit_arch, unshare, job_ns) == ALLOW
    assert run_filter(outer, abi.audit_arch, unshare, CLONE_NEWNET) == ALLOW
    for flags in (CLONE_NEWUSER, job_ns | CLONE_NEWUSER, 0x20000000, 0x04000000):  # user, pid, uts
        assert run_filter(outer, abi.audit_arch, unshare, flags) == EPERM
    assert run_filter(outer, abi.audit_arch, mount) == ALLOW
    assert run_filter(strict, abi.audit_arch, unshare, job_ns) == EPERM
    assert run_filter(strict, abi.audit_arch, mount) == EPERM
    for name, nr in abi.denied.items():
        if name not in ("unshare", "mount"):
            assert run_filter(outer, abi.audit_arch, nr) == EPERM, name


@pytest.mark.parametrize(("machine", "sig", "act", "expected"), SIGACTION_CASES)
def test_sigchld_disposition_cannot_be_changed(machine, sig, act, expected):
    abi = seccomp.ABIS[machine]
    if sig >> 32:  # the kernel takes an int: high bits of the register are ignored, so deny as SIGCHLD
        expected = EPERM if act else ALLOW
    assert run_filter(seccomp.filter_program(machine), abi.audit_arch, abi.rt_sigaction, sig, act) == expected


@pytest.mark.parametrize("machine", sorted(seccomp.ABIS))
def test_every_denied_call_is_denied_and_other_abis_are_killed(machine):
    program, abi = seccomp.filter_program(machine), seccomp.ABIS[machine]
    assert len(abi.denied) == len(set(abi.denied.values())) == 42
    for name, nr in abi.denied.items():
        assert run_filter(program, abi.audit_arch, nr) == EPERM, name
    for other in {a.audit_arch for a in seccomp.ABIS.values()} - {abi.audit_arch} | {AUDIT_I386, AUDIT_ARM}:
        assert run_filter(program, other, 0) == KILL


def test_both_tables_deny_the_same_calls():
    assert set(seccomp.DENIED_X86_64) == set(seccomp.DENIED_AARCH64)


@pytest.mark.parametrize(("machine", "scmp_arch"), [("x86_64", 0xC000003E), ("aarch64", 0xC00000B7)])
def test_numbers_match_libseccomp(machine, scmp_arch):
    """libseccomp's own tables, where the library is installed, agree with ours."""
    path = ctypes.util.find_library("seccomp")
    if path is None:
        pytest.skip("libseccomp is not installed")
    lib = ctypes.CDLL(path)
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    table = seccomp.ABIS[machine]
    theirs = {name: lib.seccomp_syscall_resolve_name_arch(scmp_arch, name.encode()) for name in table.denied}
    known = {name: nr for name, nr in theirs.items() if nr >= 0}  # an old libseccomp lacks the newest calls
    assert len(known) >= 30
    assert known == {name: table.denied[name] for name in known}
    for name, nr in (("clone", table.clone), ("clone3", table.clone3), ("rt_sigaction", table.rt_sigaction)):
        assert lib.seccomp_syscall_resolve_name_arch(scmp_arch, name.encode()) in (nr, -1)


def test_an_architecture_without_a_filter_is_refused(monkeypatch):
    with pytest.raises(seccomp.UnsupportedArchitecture, match="riscv64"):
        seccomp.filter_program("riscv64")
    monkeypatch.setattr(seccomp, "host_machine", lambda: "riscv64")
    with SandboxPool(1) as pool, pytest.raises(SandboxUnavailable, match="no seccomp filter for architecture 'riscv64'"):
        pool.run_script("print('must not run unfiltered')")
