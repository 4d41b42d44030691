"""The seccomp program itself, run through a small classic-BPF interpreter for both architectures it supports, so
the aarch64 variant is checked on an x86_64 machine too (and the other way round)."""

import errno
import struct

import pytest

from posttrainbench.sandbox import seccomp

ALLOW, KILL = 0x7FFF0000, 0x80000000
EPERM, ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17


def execute(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    data = struct.pack("<iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x06:  # ret k
            return k
        elif code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


@pytest.fixture(params=["x86_64", "aarch64"])
def machine(request, monkeypatch):
    monkeypatch.setattr(seccomp.platform, "machine", lambda: request.param)
    return request.param


def test_denied_calls_get_eperm_and_others_pass(machine):
    program = seccomp.sandbox_filter()
    column = 0 if machine == "x86_64" else 1
    for name, numbers in seccomp.DENIED.items():
        if numbers[column] is not None:
            assert execute(program, numbers[column], ARCH[machine]) == EPERM, name
    for allowed in (0, 1, 3, 63, 64, 93, 202, 438):  # read/write/close/... and pidfd_getfd
        if allowed not in {n[column] for n in seccomp.DENIED.values()}:
            assert execute(program, allowed, ARCH[machine]) == ALLOW, allowed


def test_clone_is_judged_by_its_flags(machine):
    program = seccomp.sandbox_filter()
    clone = CLONE[machine]
    assert execute(program, clone, ARCH[machine], SIGCHLD) == ALLOW  # fork
    assert execute(program, clone, ARCH[machine], 0x3D0F00) == ALLOW  # pthread_create's flags
    assert execute(program, clone, ARCH[machine], CLONE_NEWUSER | SIGCHLD) == EPERM
    assert execute(program, 435, ARCH[machine]) == ENOSYS  # clone3: libc falls back to clone


def test_other_abis_are_killed(machine):
    program = seccomp.sandbox_filter()
    other = ARCH["aarch64" if machine == "x86_64" else "x86_64"]
    assert execute(program, 0, other) == KILL
    assert execute(program, 0, 0x40000003) == KILL  # i386
    if machine == "x86_64":
        assert execute(program, 0x40000000 | 1, ARCH[machine]) == KILL  # x32


def test_no_spawn_denies_every_way_to_a_new_task(machine):
    program = seccomp.sandbox_filter(no_spawn=True)
    ways = (56, 57, 58, 435) if machine == "x86_64" else (220, 435)
    for nr in ways:
        assert execute(program, nr, ARCH[machine], SIGCHLD) == EPERM, nr
    assert execute(program, 0, ARCH[machine]) == ALLOW


def test_nested_allows_what_bwrap_needs_for_one_more_sandbox_and_nothing_else(machine):
    program = seccomp.sandbox_filter(nested=True)
    column = 0 if machine == "x86_64" else 1
    for name, numbers in seccomp.DENIED.items():
        if numbers[column] is not None:
            expected = ALLOW if name in seccomp.NESTED else EPERM
            assert execute(program, numbers[column], ARCH[machine]) == expected, name
    assert execute(program, CLONE[machine], ARCH[machine], CLONE_NEWUSER | SIGCHLD) == ALLOW
    assert execute(program, 435, ARCH[machine]) == ENOSYS
    with pytest.raises(ValueError):
        seccomp.sandbox_filter(nested=True, no_spawn=True)
