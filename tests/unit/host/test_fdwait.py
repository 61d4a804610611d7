"""``readable`` answers what select did, also for a descriptor numbered above 1023 (where
select raises): corrald holds one pidfd per running container."""

from __future__ import annotations

import os
import resource

import pytest

from corral.host.fdwait import readable


def test_a_pipe_is_readable_once_written_and_at_its_end() -> None:
    r, w = os.pipe()
    try:
        assert not readable(r, 0)
        os.write(w, b"x")
        assert readable(r, 0) and os.read(r, 1) == b"x"
        os.close(w)
        w = -1
        assert readable(r, 0.1) and os.read(r, 1) == b""  # end of file
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_a_descriptor_above_1023() -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft <= 2000:
        pytest.skip(f"the open files limit here is {soft}: no descriptor 2000 possible")
    r, w = os.pipe()
    high = os.dup2(r, 2000)
    try:
        assert not readable(high, 0)
        os.write(w, b"x")
        assert readable(high, 0)
    finally:
        for fd in (high, r, w):
            os.close(fd)
