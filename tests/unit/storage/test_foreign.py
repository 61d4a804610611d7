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


def test_external_data_files_and_foreign_extents_are_refused() -> None:
    """What qemu-img 7.2 says of a qcow2 with ``data_file=`` and of a VMDK descriptor whose
    extent is ``/etc/hostname``: converting either would copy that host file into a disk."""
    qcow2 = {"format": "qcow2", "virtual-size": 1 << 20, "filename": str(P),
             "format-specific": {"type": "qcow2", "data": {
                 "compat": "1.1", "data-file": "/etc/shadow", "data-file-raw": True}}}
    with pytest.raises(InvalidInput, match="external data file"):
        parse_info(json.dumps(qcow2), P)
    flat = {"format": "vmdk", "virtual-size": 1 << 20, "filename": str(P),
            "format-specific": {"type": "vmdk", "data": {
                "create-type": "monolithicFlat",
                "extents": [{"virtual-size": 1 << 20, "filename": "/etc/hostname",
                             "format": "FLAT"}]}}}
    with pytest.raises(InvalidInput, match="extent in another file"):
        parse_info(json.dumps(flat), P)
    sparse = {**flat, "format-specific": {"type": "vmdk", "data": {
        "create-type": "monolithicSparse",
        "extents": [{"virtual-size": 1 << 20, "filename": str(P), "format": ""}]}}}
    assert parse_info(json.dumps(sparse), P).format == "vmdk"
