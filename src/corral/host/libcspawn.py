"""``posix_spawnp(3)`` called through ctypes, so that the calling thread lets go of the GIL.

CPython's ``os.posix_spawnp`` holds the GIL through the whole call: glibc's
``clone(CLONE_VM|CLONE_VFORK)`` suspends the caller until the child has exec'd, so every
other thread of corrald waited while the kernel loaded ``lxc-start`` (~2 ms per container
start under load, 18 % of corrald's Python time in a bulk create: docs/perf-log.md,
"density 4"). A ctypes call of a ``CDLL`` function releases the GIL; the child is set up
by the same glibc code from the same arguments (file actions, default signals, signal
mask, session), so what the command gets is unchanged (tests/unit/host/test_spawn.py runs
against both).

``available()`` is False where libc lacks these functions (then ``host.spawn`` keeps
``os.posix_spawnp``).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping, Sequence
from typing import Any

# <spawn.h> (glibc; musl has the same values)
POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08
POSIX_SPAWN_SETSID = 0x80
# Opaque glibc types, given more room than they need (x86_64: 80, 336 and 128 bytes): the
# init functions fill them, nothing here reads them.
_FILE_ACTIONS_SIZE = 256
_ATTR_SIZE = 1024
_SIGSET_SIZE = 256

_c_char_pp = ctypes.POINTER(ctypes.c_char_p)


def _load() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        p = ctypes.c_void_p
        for name, args in (
            ("posix_spawnp", [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, p, p,
                              _c_char_pp, _c_char_pp]),
            ("posix_spawn_file_actions_init", [p]),
            ("posix_spawn_file_actions_destroy", [p]),
            ("posix_spawn_file_actions_adddup2", [p, ctypes.c_int, ctypes.c_int]),
            ("posix_spawn_file_actions_addclose", [p, ctypes.c_int]),
            ("posix_spawnattr_init", [p]),
            ("posix_spawnattr_destroy", [p]),
            ("posix_spawnattr_setflags", [p, ctypes.c_short]),
            ("posix_spawnattr_setsigdefault", [p, p]),
            ("posix_spawnattr_setsigmask", [p, p]),
            ("sigemptyset", [p]),
            ("sigaddset", [p, ctypes.c_int]),
        ):
            function = getattr(libc, name)
            function.argtypes = args
            function.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def _load_closefrom(libc: ctypes.CDLL | None) -> Any:
    """glibc >= 2.34's ``posix_spawn_file_actions_addclosefrom_np``: every descriptor from
    a number on closed in the child (close_range), none listed here."""
    function = getattr(libc, "posix_spawn_file_actions_addclosefrom_np", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_libc = _load()
_closefrom = _load_closefrom(_libc)


def available() -> bool:
    return _libc is not None


def closes_from() -> bool:
    """Whether ``posix_spawnp(closefrom=…)`` works here (else the caller lists the
    descriptors to close)."""
    return _closefrom is not None


def _check(code: int, what: str) -> None:
    if code != 0:
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _strings(items: Sequence[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    array = (ctypes.c_char_p * (len(items) + 1))()
    array[:-1] = list(items)
    array[-1] = None
    return array


def posix_spawnp(path: str, argv: Sequence[str], env: Mapping[str, str] | None, *,
                 dup2: Sequence[tuple[int, int]], close: Sequence[int],
                 dup2_last: Sequence[tuple[int, int]], setsigdef: Sequence[int],
                 setsid: bool, closefrom: int | None = None) -> int:
    """As ``os.posix_spawnp(path, argv, env, file_actions=[dup2…, close…, dup2_last…],
    setsigdef=…, setsigmask=(), setsid=…)``, the GIL released during the call; the pid.
    ``env`` None: this process's environment. ``closefrom`` (where ``closes_from()``):
    then every descriptor from that number on is closed in the child, after the dup2s."""
    libc = _libc
    if libc is None:
        raise OSError("posix_spawnp is not available through ctypes here")
    environment = ([k + b"=" + v for k, v in os.environb.items()] if env is None else
                   [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()])
    arguments = _strings([os.fsencode(a) for a in argv])
    envp = _strings(environment)
    actions = ctypes.create_string_buffer(_FILE_ACTIONS_SIZE)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    _check(libc.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init")
    try:
        _check(libc.posix_spawnattr_init(attr), "posix_spawnattr_init")
        try:
            for fd, target in dup2:
                _check(libc.posix_spawn_file_actions_adddup2(actions, fd, target), "dup2")
            for fd in close:
                _check(libc.posix_spawn_file_actions_addclose(actions, fd), "close")
            for fd, target in dup2_last:
                _check(libc.posix_spawn_file_actions_adddup2(actions, fd, target), "dup2")
            if closefrom is not None:
                if _closefrom is None:
                    raise OSError("posix_spawn_file_actions_addclosefrom_np is missing")
                _check(_closefrom(actions, closefrom), "closefrom")
            defaults = ctypes.create_string_buffer(_SIGSET_SIZE)
            libc.sigemptyset(defaults)
            for signum in setsigdef:
                if libc.sigaddset(defaults, signum) != 0:
                    raise ValueError(f"not a signal: {signum}")
            empty = ctypes.create_string_buffer(_SIGSET_SIZE)
            libc.sigemptyset(empty)
            _check(libc.posix_spawnattr_setsigdefault(attr, defaults), "setsigdefault")
            _check(libc.posix_spawnattr_setsigmask(attr, empty), "setsigmask")
            flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
            if setsid:
                flags |= POSIX_SPAWN_SETSID
            _check(libc.posix_spawnattr_setflags(attr, flags), "posix_spawnattr_setflags")
            pid = ctypes.c_int(0)
            # a CDLL call: the GIL is released until the child has exec'd (or failed to)
            code = libc.posix_spawnp(ctypes.byref(pid), os.fsencode(path), actions, attr,
                                     arguments, envp)
            if code != 0:
                raise OSError(code, os.strerror(code), path)
            return pid.value
        finally:
            libc.posix_spawnattr_destroy(attr)
    finally:
        libc.posix_spawn_file_actions_destroy(actions)
