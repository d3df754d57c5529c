"""The phantom is drawn as a tissue map first; the rich anatomy adds organs around the
same skeleton (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import PhantomError
from appliance.phantom import generate_study
from appliance.phantom.tissues import GROUP, N_TISSUES, Tissue, classic_lut, labels_from_tissues


@pytest.fixture(scope="module")
def pair():
    return generate_study(3, "small"), generate_study(3, "small", anatomy="rich")


def test_the_tissue_map_implies_the_label_map_in_both_anatomies(pair):
    for study in pair:
        assert study.tissues is not None and study.tissues.array.dtype == np.uint8
        assert study.tissues.array.shape == study.labels.array.shape
        assert np.array_equal(labels_from_tissues(study.tissues.array), study.labels.array)


def test_rich_anatomy_keeps_the_skeleton_and_its_truth(pair):
    classic, rich = pair
    assert np.array_equal(classic.labels.array, rich.labels.array)
    assert rich.truth.pop("anatomy") == "rich"
    assert "anatomy" not in classic.truth
    assert rich.truth == classic.truth


def test_rich_anatomy_holds_the_organs_a_real_ct_has(pair):
    classic, rich = pair
    t_classic, t_rich = classic.tissues.array, rich.tissues.array
    organs = (Tissue.KIDNEY, Tissue.SPLEEN, Tissue.AORTA, Tissue.VENA_CAVA, Tissue.BOWEL, Tissue.SKIN,
              Tissue.BLADDER, Tissue.MUSCLE)
    for code in organs:
        assert np.count_nonzero(t_rich == code) > 100, code.name
        assert not np.any(t_classic == code), code.name
    assert not np.array_equal(classic.image.array, rich.image.array)


def _centroid_mm(study, mask):
    idx = np.argwhere(mask)[:, ::-1].astype(float)  # (x, y, z) voxel
    return np.asarray(study.image.origin_mm) + idx.mean(axis=0) * np.asarray(study.image.spacing_mm)


def test_organs_sit_where_anatomy_puts_them(pair):
    """LPS: +x is the patient's left, +y posterior. The aorta runs in front of the column,
    left of the vena cava; the kidneys lie either side of it; the spleen on the left."""
    _, rich = pair
    t = rich.tissues.array
    bodies = _centroid_mm(rich, rich.labels.array == 1)
    aorta = _centroid_mm(rich, t == Tissue.AORTA)
    cava = _centroid_mm(rich, t == Tissue.VENA_CAVA)
    spleen = _centroid_mm(rich, t == Tissue.SPLEEN)
    assert aorta[1] < bodies[1] - 20.0
    assert aorta[0] > cava[0]
    zs = np.flatnonzero((t == Tissue.SPLEEN).any(axis=(1, 2)))
    level = np.zeros_like(t, dtype=bool)
    level[zs] = rich.labels.array[zs] == 1
    assert spleen[0] > _centroid_mm(rich, level)[0] + 50.0  # left of the bodies at its own height
    kidney = t == Tissue.KIDNEY
    x_mm = rich.image.origin_mm[0] + np.arange(t.shape[2]) * rich.image.spacing_mm[0]
    left = kidney & (x_mm > bodies[0])[None, None, :]
    right = kidney & (x_mm < bodies[0])[None, None, :]
    assert np.count_nonzero(left) > 500 and np.count_nonzero(right) > 500


def test_classic_lut_gives_bone_codes_of_one_kind_one_value():
    p = generate_study(3, "small").params
    lut = classic_lut(p)
    assert lut.shape == (N_TISSUES,)
    for group in ("cortex", "cancellous"):
        values = {float(lut[t]) for t in Tissue if GROUP[t] == group}
        assert len(values) == 1, group
    assert lut[Tissue.BODY_CORTEX] == np.float32(p.cortical_hu)
    assert lut[Tissue.DISC] == np.float32(p.disc_hu)


def test_unknown_anatomy_is_refused():
    with pytest.raises(PhantomError, match="unknown anatomy"):
        generate_study(3, "small", anatomy="baroque")


def test_write_study_writes_the_tissue_map_when_asked(tmp_path, pair):
    from appliance.phantom import write_study
    from appliance.volume import read_nifti

    paths = write_study(pair[1], tmp_path / "s", dicom=False, tissues=True)
    back = read_nifti(paths["tissues"])
    assert np.array_equal(back.array, pair[1].tissues.array)
    assert "tissues" not in write_study(pair[1], tmp_path / "t", dicom=False)
