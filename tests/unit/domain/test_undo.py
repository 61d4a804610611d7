"""The labelled undo helper: newest first, each logged, a failing step does not stop the
others, and a success takes nothing back."""

from __future__ import annotations

import logging

import pytest

from corral.domain.errors import HostFailure
from corral.domain.undo import Undo


def test_a_failure_runs_every_step_newest_first_and_logs_each(
        caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []
    caplog.set_level(logging.INFO, logger="corral.undo")
    with pytest.raises(ValueError, match="half-way"), Undo() as undo:
        undo.push("remove the row", lambda: done.append("row"))
        undo.push("remove the directory", lambda: done.append("directory"))
        undo.push("stop the guest", lambda: done.append("guest"))
        raise ValueError("half-way")
    assert done == ["guest", "directory", "row"]
    said = [r.getMessage() for r in caplog.records]
    assert said == ["undo: stop the guest", "undo: remove the directory",
                    "undo: remove the row"]
    assert undo.errors == []


def test_a_failing_step_is_collected_and_the_others_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []
    undo = Undo(logging.getLogger("corral.test"))

    def broken() -> None:
        raise HostFailure("the disk is busy")

    def crash() -> None:
        raise OSError("no such file")

    undo.push("first", lambda: done.append("first"))
    undo.push("release the disk", broken)
    undo.push("middle", lambda: done.append("middle"))
    undo.push("remove the file", crash)
    undo.push("last", lambda: done.append("last"))
    with caplog.at_level(logging.INFO, logger="corral.test"):
        errors = undo.run()
    assert done == ["last", "middle", "first"]
    assert errors == ["remove the file: OSError: no such file",
                      "release the disk: the disk is busy"]
    assert undo.errors == errors
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["undo: remove the file failed: OSError: no such file",
                        "undo: release the disk failed: the disk is busy"]
    assert undo.run() == []  # run forgets the steps: nothing runs twice
    assert done == ["last", "middle", "first"]


def test_a_success_discards_the_steps() -> None:
    done: list[str] = []
    with Undo() as undo:
        undo.push("never", lambda: done.append("never"))
        assert len(undo) == 1
    assert len(undo) == 0
    assert undo.run() == []
    assert done == []


def test_the_original_error_propagates_even_when_an_undo_fails() -> None:
    def broken() -> None:
        raise RuntimeError("undo broke")

    with pytest.raises(KeyError) as caught, Undo() as undo:
        undo.push("broken", broken)
        raise KeyError("original")
    assert caught.value.args == ("original",)
    assert undo.errors == ["broken: RuntimeError: undo broke"]


def test_pop_forgets_only_the_newest_step() -> None:
    done: list[str] = []
    undo = Undo()
    undo.push("first", lambda: done.append("first"))
    undo.push("second", lambda: done.append("second"))
    undo.pop()
    assert undo.run() == []
    assert done == ["first"]
