import json

import numpy as np
import pytest

from appliance.postprocess import clean_labels
from appliance.volume import read_nifti, write_nifti

from tests.appliance.inference.inference_helpers import make_bundle


def _parser():
    import argparse

    from appliance.infer_cli import register
    parser = argparse.ArgumentParser(prog="wbspine")
    register(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("source,engine,engine_name", [("nifti", "auto", "openvino:CPU:f32"),
                                                        ("dicom", "cpu", "onnxruntime:CPUExecutionProvider")])
def test_wbspine_infer_end_to_end(small_study, tmp_path, source, engine, engine_name):
    from appliance.phantom.dicom_series import write_ct_series

    # working spacing = the phantom's 2.5 mm, so the oracle's answer is known exactly
    bundle = make_bundle(tmp_path / "bundle", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5))
    if source == "nifti":
        inp = write_nifti(small_study.image, tmp_path / "image.nii.gz")
    else:
        inp = write_ct_series(small_study, tmp_path / "dicom")
    out = tmp_path / "out"
    # the oracle labels ribs and arms too, which a spine model never does: no tracking here
    args = _parser().parse_args(["infer", str(inp), "--bundle", str(bundle), "--out", str(out), "--no-progress", "--no-column-check",
                                 "--no-track", "--engine", engine])
    assert args.handler(args) == 0
    labels = read_nifti(out / "labels.nii.gz")
    image = small_study.image
    assert labels.same_geometry(image) and labels.array.dtype == np.uint8
    # the oracle model labels voxels brighter than 250 as 1; after the same cleanup, the
    # label map must be exactly that, voxel for voxel on the input grid
    expected = clean_labels((image.array > 250).astype(np.uint8), image.spacing_mm)
    assert np.array_equal(labels.array, expected)
    timing = json.loads((out / "timing.json").read_text())
    for key in ("load_s", "preprocess_s", "inference_s", "postprocess_s", "measure_s", "outputs_s", "total_s"):
        assert timing["timing_s"][key] >= 0
    assert timing["engine"] == engine_name
    w = timing["windows"]
    assert w["run"] + w["skipped_empty"] == w["windows"] > 0
    assert timing["crop"]["source"] == "bone"
    measurements = json.loads((out / "measurements.json").read_text())
    assert measurements["schema"] == "wbspine.measurements/1"
    # the oracle labels every bright voxel as a vertebral body: no pelvis, said, not zeroed
    assert any("pelvis" in w for w in measurements["warnings"])
    assert measurements["pelvic_incidence_deg"] is None and measurements["sacral_slope_deg"] is None
    stl = sorted(p.name for p in (out / "stl").glob("*.stl"))
    assert {"combined.stl", "printable.stl"} <= set(stl)
    dicom_outputs = [out / "seg.dcm", out / "sr.dcm", out / "key_images" / "coronal.dcm",
                     out / "stl_dicom" / "combined.dcm"]
    if source == "dicom":
        import pydicom

        assert all(p.is_file() for p in dicom_outputs)
        seg = pydicom.dcmread(out / "seg.dcm")
        source_uid = pydicom.dcmread(next(inp.iterdir()), stop_before_pixels=True).StudyInstanceUID
        assert seg.Modality == "SEG" and seg.StudyInstanceUID == source_uid
    else:  # no DICOM source to reference: no DICOM objects, but the printable models
        assert not any(p.exists() for p in dicom_outputs)


def test_infer_labels_only_skips_the_outputs(small_study, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5))
    inp = write_nifti(small_study.image, tmp_path / "image.nii.gz")
    out = tmp_path / "out"
    args = _parser().parse_args(["infer", str(inp), "--bundle", str(bundle), "--out", str(out),
                                 "--no-progress", "--labels-only", "--no-column-check"])
    assert args.handler(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.nii.gz", "measurements.json", "timing.json"]


def test_infer_refuses_a_tampered_bundle_with_a_clear_message(small_study, tmp_path, capsys):
    from appliance.errors import BundleError

    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes() + b"\0")
    inp = write_nifti(small_study.image, tmp_path / "image.nii.gz")
    args = _parser().parse_args(["infer", str(inp), "--bundle", str(bundle), "--out", str(tmp_path / "o")])
    with pytest.raises(BundleError, match="manifest says"):
        args.handler(args)


def test_folder_with_two_series_lists_them_and_series_picks_one(small_study, tmp_path, capsys):
    import pydicom
    from pydicom.uid import generate_uid

    from appliance.cli import main
    from appliance.phantom.dicom_series import write_ct_series

    folder = write_ct_series(small_study, tmp_path / "dicom")
    chosen = generate_uid(entropy_srcs=["second series"])
    for i, f in enumerate(sorted(folder.glob("*.dcm"))):  # a second reconstruction in the same folder
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = chosen, 9, "bone kernel"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[chosen, str(i)])
        ds.save_as(folder / f"B{f.name}")
    bundle = make_bundle(tmp_path / "bundle", window=(16, 32, 32), spacing=(2.5, 2.5, 2.5), oracle="smoothed")
    common = ["--bundle", str(bundle), "--no-progress", "--no-track"]
    assert main(["infer", str(folder), "--out", str(tmp_path / "refused"), *common]) == 2
    err = capsys.readouterr().err
    assert "holds 2 series" in err and f"UID {chosen}" in err and "'bone kernel'" in err and "--series" in err
    assert main(["infer", str(folder), "--out", str(tmp_path / "out"), "--series", chosen, *common]) == 0
    seg = pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == chosen
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert len(referenced) == small_study.image.shape_zyx[0]
