"""``write_outputs`` on a partial label map: absent structures get no segment, unmeasurable
values no number, and the objects stay valid."""

from __future__ import annotations

import copy
import subprocess

import numpy as np
import pydicom

from appliance.labels import Label
from appliance.outputs import codes
from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.sr import numeric_items
from appliance.outputs.writer import write_outputs

ALGORITHM = AlgorithmInfo("wbspine-test-unet", "1.2.3")


def test_no_femoral_heads(written, tmp_path):
    labels = written.study.labels
    arr = labels.array.copy()
    arr[arr == Label.FEMORAL_HEADS] = 0
    m = copy.deepcopy(written.measurements)
    m["pelvic_tilt_deg"] = m["pelvic_incidence_deg"] = None
    m["femoral_heads"] = []
    m["warnings"] = ["no femoral head found: pelvic tilt and incidence not measured"]
    paths = write_outputs(labels.with_array(arr), written.dicom_dir, m, tmp_path, ALGORITHM, stl=False,
                          source=written.source)
    seg = pydicom.dcmread(paths["seg"], stop_before_pixels=True)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Vertebral bodies", "Pelvis with sacrum"]
    sr = pydicom.dcmread(paths["sr"])
    names = {code for code, *_ in numeric_items(sr)}
    assert codes.PELVIC_TILT.value not in names and codes.PELVIC_INCIDENCE.value not in names
    assert codes.SACRAL_SLOPE.value in names
    for role in ("seg", "sr", "key_image_coronal"):
        run = subprocess.run(["dciodvfy", str(paths[role])], capture_output=True, timeout=60)
        assert b"Error" not in run.stderr + run.stdout
    assert not any(k.startswith("stl") for k in paths)
    assert np.asarray(pydicom.dcmread(paths["key_image_sagittal"]).pixel_array).ndim == 3
