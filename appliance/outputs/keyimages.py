"""Key images as Secondary Capture Image Storage (PS3.3 A.8.1): one coronal and one
sagittal RGB view (see :mod:`render`) in one series, same study as the source, for
PACS viewers that do not render SR. Patient Orientation (0020,0020) gives the view
axes (PS3.3 C.7.6.1.1.1)."""

from __future__ import annotations

import highdicom as hd
import numpy as np

from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.charset import SPECIFIC_CHARACTER_SET
from appliance.outputs.render import View, render_views
from appliance.outputs.source import SourceSeries
from appliance.volume import Volume

KEY_IMAGE_SERIES_NUMBER = 903


def build_key_images(labels: Volume, source: SourceSeries, measurements: dict,
                     algorithm: AlgorithmInfo, views: list[View] | None = None) -> list[hd.sc.SCImage]:
    """Secondary Capture instances (coronal, sagittal) of the annotated study."""
    views = views if views is not None else render_views(labels, source, measurements)
    series_uid = hd.UID()
    out = []
    for k, view in enumerate(views):
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source.first,
            pixel_array=np.ascontiguousarray(view.rgb, dtype=np.uint8),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=KEY_IMAGE_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=k + 1,
            manufacturer=algorithm.manufacturer,
            patient_orientation=view.orientation,
            pixel_spacing=(view.pixel_mm, view.pixel_mm),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            specific_character_set=SPECIFIC_CHARACTER_SET,
        )
        sc.SeriesDescription = "wbspine key images"
        sc.ImageComments = f"{view.name} thick-slab MIP with masks, endplate lines and angles; " \
                           f"{algorithm.name} {algorithm.version}"
        sc.BurnedInAnnotation = "YES"
        # dciodvfy wants General Series Laterality (2C) unless the body part is unpaired.
        sc.BodyPartExamined = str(source.first.get("BodyPartExamined") or "SPINE")
        out.append(sc)
    return out
