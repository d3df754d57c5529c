import shutil
import tracemalloc

import numpy as np
import pydicom
import pytest

from appliance.errors import SeriesError
from appliance.phantom.dicom_series import write_ct_series
from appliance.series import SeriesLimits, read_series


@pytest.fixture(scope="module")
def phantom_dicom(small_study, tmp_path_factory):
    return write_ct_series(small_study, tmp_path_factory.mktemp("dicom"))


@pytest.fixture()
def subset(phantom_dicom, tmp_path):
    """The first 30 slices of the phantom series, to be spoilt by each test."""
    out = tmp_path / "series"
    out.mkdir()
    for f in sorted(phantom_dicom.iterdir())[:30]:
        shutil.copy(f, out / f.name)
    return out


def edit(folder, which, **attrs):
    files = sorted(folder.iterdir())
    for f in (files[i] for i in which):
        ds = pydicom.dcmread(f)
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.save_as(f)


def test_phantom_dicom_equals_the_nifti_volume(small_study, phantom_dicom, tmp_path):
    from appliance.volume import read_nifti, write_nifti
    nifti = read_nifti(write_nifti(small_study.image, tmp_path / "image.nii.gz"))
    vol = read_series(phantom_dicom)
    assert vol.same_geometry(nifti, atol_mm=1e-3)
    assert vol.array.dtype == np.int16 and np.array_equal(vol.array, nifti.array)


def test_localizer_is_excluded(subset):
    loc = pydicom.dcmread(sorted(subset.iterdir())[0])
    loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    loc.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    loc.SOPInstanceUID = loc.SOPInstanceUID + ".9"
    loc.save_as(subset / "LOCALIZER.dcm")
    (subset / "notes.txt").write_text("not DICOM")
    assert read_series(subset).shape_zyx[0] == 30


def expect(code, folder, **kw):
    with pytest.raises(SeriesError) as info:
        read_series(folder, **kw)
    assert info.value.code == code, str(info.value)
    return str(info.value)


def test_not_a_volume(tmp_path):
    expect("not_a_volume", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    expect("not_a_volume", tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.dcm").write_text("hello")
    expect("not_a_volume", tmp_path / "text")


def test_fewer_slices_than_a_window(subset):
    for f in sorted(subset.iterdir())[10:]:
        f.unlink()
    assert "10 slice" in expect("too_few_slices", subset, limits=SeriesLimits(min_slices=16))


def test_uneven_slices(subset):
    ds = pydicom.dcmread(sorted(subset.iterdir())[12])
    edit(subset, [12], ImagePositionPatient=[*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 0.9])
    expect("uneven_spacing", subset)


def test_missing_slices(subset):
    sorted(subset.iterdir())[14].unlink()
    assert "1 slice(s) missing" in expect("missing_slices", subset)


def test_mixed_orientations(subset):
    edit(subset, [5], ImageOrientationPatient=[1, 0, 0, 0, 0.9950042, 0.0998334])
    expect("mixed_orientation", subset)


def test_non_ct_modality(subset):
    edit(subset, range(30), Modality="MR")
    assert "MR" in expect("not_ct", subset)


def test_two_series_are_listed_and_one_can_be_chosen(subset):
    edit(subset, range(14), SeriesInstanceUID="1.2.3.4", SeriesNumber=7, SeriesDescription="bone 0.6")
    message = expect("multiple_series", subset)
    # every series is listed with what tells them apart, and how to pick one
    assert "--series UID" in message and "UID 1.2.3.4" in message and "'bone 0.6'" in message
    assert "14 image(s)" in message and "16 image(s)" in message
    assert read_series(subset, series_uid="1.2.3.4", limits=SeriesLimits(min_slices=8)).shape_zyx[0] == 14
    other = str(pydicom.dcmread(sorted(subset.iterdir())[-1]).SeriesInstanceUID)
    assert read_series(subset, series_uid=other).shape_zyx[0] == 16
    assert "not in the folder" in expect("not_a_volume", subset, series_uid="1.2.9")


def test_truncated_file_is_named_not_a_traceback(subset):
    victim = sorted(subset.iterdir())[11]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # cut in transfer / by a full disk
    message = expect("unreadable", subset)
    assert message.startswith(victim.name) and "truncated or corrupt" in message


def test_dimension_cap_is_checked_before_allocating(subset, monkeypatch):
    import appliance.series as series

    monkeypatch.setattr(series, "_pixels", lambda path: pytest.fail("pixels read despite the cap"))
    tracemalloc.start()
    expect("too_large", subset, limits=SeriesLimits(max_voxels=140 * 140 * 29))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 140 * 140 * 30 * 2  # never allocated the volume


def _set_positions(folder, z_of_k):
    for k, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, round(float(z_of_k(k)), 4)]
        ds.save_as(f)


def test_drifting_spacing_is_refused_by_reader_and_node_alike(subset):
    """Steps growing by up to 4 %: the old 5 % step tolerance let it through to a full
    inference, after which the SEG writer (0.05 mm) refused it with a misleading message."""
    from dicom_node.series import is_consistent

    z0, step = (float(v) for v in (pydicom.dcmread(sorted(subset.iterdir())[0]).ImagePositionPatient[2], 2.5))
    drift = [z0 + sum(step * (1 + 0.04 * j / 29) for j in range(k)) for k in range(30)]
    _set_positions(subset, lambda k: drift[k])
    message = expect("uneven_spacing", subset)
    assert "off the regular" in message and "tolerance 0.05 mm" in message
    rows = [{"images_in_acquisition": None, "instance_number": k + 1, "orientation": "1,0,0,0,1,0",
             "position_mm": z} for k, z in enumerate(drift)]
    assert not is_consistent(rows)  # the node waits, it does not complete at release


def test_jitter_within_tolerance_is_read_and_accepted_by_the_writers(subset):
    from appliance.outputs.source import load_source_series
    from dicom_node.series import is_consistent

    z0 = float(pydicom.dcmread(sorted(subset.iterdir())[0]).ImagePositionPatient[2])
    jitter = [z0 + 2.5 * k + (0.03 if k % 3 == 1 else 0.0) for k in range(30)]  # DS rounding, 0.03 mm
    _set_positions(subset, lambda k: jitter[k])
    volume = read_series(subset)
    load_source_series(subset, volume)  # the SEG/SR writers' check passes on the same slices
    rows = [{"images_in_acquisition": None, "instance_number": k + 1, "orientation": "1,0,0,0,1,0",
             "position_mm": z} for k, z in enumerate(jitter)]
    assert is_consistent(rows)
