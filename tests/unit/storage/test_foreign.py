from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.storage.foreign import parse_info

P = Path("/images/x.img")


def test_formats_and_sizes() -> None:
    info = parse_info(json.dumps({"format": "qcow2", "virtual-size": 1 << 30}), P)
    assert (info.format, info.virtual_size) == ("qcow2", 1 << 30)


def test_backing_files_are_refused() -> None:
    text = json.dumps({"format": "qcow2", "virtual-size": 1 << 20,
                       "backing-filename": "/etc/shadow"})
    with pytest.raises(InvalidInput, match="backing file"):
        parse_info(text, P)


def test_unknown_formats_and_empty_images_are_refused() -> None:
    with pytest.raises(InvalidInput, match="'luks'"):
        parse_info(json.dumps({"format": "luks", "virtual-size": 1 << 20}), P)
    with pytest.raises(InvalidInput, match="empty"):
        parse_info(json.dumps({"format": "raw", "virtual-size": 0}), P)
