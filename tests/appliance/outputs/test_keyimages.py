"""Key images: two Secondary Capture views with masks, endplate lines and values."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from appliance.outputs.render import LINE_COLOUR


@pytest.fixture(scope="module")
def views(written):
    return {name: pydicom.dcmread(written.paths[f"key_image_{name}"]) for name in ("coronal", "sagittal")}


def test_secondary_capture_in_the_study_with_orientation(written, views):
    assert {v.SOPClassUID for v in views.values()} == {"1.2.840.10008.5.1.4.1.1.7"}
    assert len({v.SeriesInstanceUID for v in views.values()}) == 1
    assert views["coronal"].PatientOrientation == ["L", "F"]
    assert views["sagittal"].PatientOrientation == ["P", "F"]
    for v in views.values():
        assert v.StudyInstanceUID == written.source.study_instance_uid
        assert v.PhotometricInterpretation == "RGB" and v.BurnedInAnnotation == "YES"
        assert v.pixel_array.shape[0] >= 900  # readable: ~1000 px tall


def _has_colour(rgb: np.ndarray, colour, tol: int = 2) -> int:
    return int(np.all(np.abs(rgb.astype(int) - np.asarray(colour)) <= tol, axis=-1).sum())


def test_masks_lines_and_text_are_drawn(views):
    coronal = views["coronal"].pixel_array
    assert _has_colour(coronal, LINE_COLOUR) > 100  # end-vertebra endplate lines
    assert _has_colour(views["sagittal"].pixel_array, LINE_COLOUR) > 100  # T1/T12/L1/L5/S1 lines
    # the overlays tint the image: every structure's hue is present (R>B for bodies, B>R for pelvis)
    r, g, b = (coronal[..., i].astype(int) for i in range(3))
    assert ((r - b) > 60).sum() > 1000 and ((b - r) > 60).sum() > 1000
    assert (coronal[:120, :400] == 255).all(axis=-1).sum() > 200  # white legend text at the top left
