"""Compressed transfer syntaxes a scanner may send are accepted, stored bit-exact and decodable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from tests.dicom_node.conftest import storescu, wait_for
from dicom_node.policy import StoragePolicy


STORESCU_OPTION = {RLELossless: "-xr", JPEG2000Lossless: "-xv", JPEGLosslessSV1: "-xs"}


def encodable(policy: StoragePolicy) -> list[str]:
    """Lossless syntaxes the node accepts and this environment can also encode (RLE always)."""
    out = []
    for uid in (RLELossless, JPEG2000Lossless, JPEGLosslessSV1):
        try:
            if uid in policy.transfer_syntaxes and get_encoder(uid).is_available:
                out.append(uid)
        except (NotImplementedError, ValueError):
            continue
    return out


def test_compressed_series_is_received_and_decodes_losslessly(start_node, short_series: Path,
                                                              tmp_path: Path) -> None:
    node = start_node()
    syntaxes = encodable(node.scp.policy)
    assert RLELossless in syntaxes
    sources = sorted(short_series.glob("*.dcm"))[: len(syntaxes)]
    sent = []
    for src, uid in zip(sources, syntaxes, strict=True):
        ds = dcmread(src)
        ds.compress(uid)
        out = tmp_path / f"{uid}.dcm"
        ds.save_as(out, enforce_file_format=True)
        sent.append((dcmread(src).pixel_array, out, uid))
    for _, path, uid in sent:  # storescu proposes one compressed syntax per option
        storescu(node.port, [path], options=[STORESCU_OPTION[uid]])
    wait_for(lambda: node.index.query("SELECT COUNT(*) FROM instances")[0][0] == len(sent), timeout_s=10)
    for pixels, out, uid in sent:
        sop = str(dcmread(out, stop_before_pixels=True).SOPInstanceUID)
        row = node.index.query("SELECT path, transfer_syntax FROM instances WHERE sop_uid=?", (sop,))[0]
        assert row["transfer_syntax"] == uid
        stored = dcmread(row["path"])
        assert stored.file_meta.TransferSyntaxUID == uid
        assert np.array_equal(stored.pixel_array, pixels)
    print(f"\naccepted and decoded: {[str(u.name) for _, _, u in sent]}")
