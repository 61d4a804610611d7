"""The console log as text (pure)."""

from __future__ import annotations

from corral.cli.console import plain_text


def test_plain_text_removes_control_sequences() -> None:
    log = (b"\x1b[2J\x1b[H\x1b[1;32m[  OK  ]\x1b[0m Started\r\n"
           b"\x1b]0;root@box: ~\x07login: \x1b(B\x1b7x\x1b8\x08\x00ok\r\n"
           b"progress 10%\rprogress 100%\r\n"
           b"tail \x1b[6n")
    assert plain_text(log) == (b"[  OK  ] Started\nlogin: xok\n"
                               b"progress 10%\nprogress 100%\ntail ")


def test_plain_text_drops_a_sequence_cut_off_by_the_end() -> None:
    assert plain_text(b"done\x1b[") == b"done"
    assert plain_text(b"done\x1b]0;unfinished title") == b"done"
    assert plain_text(b"done\x1b") == b"done"
    assert plain_text("déjà vu\tok\n".encode()) == "déjà vu\tok\n".encode()
