"""Is there a vertebral column in a segmentation at all? (issue 22)

A model that does not segment (untrained, random weights, the wrong bundle) or an image
that is no spine scan produces label noise; meshing and measuring it costs a minute and
hundreds of warnings. :func:`find_column` decides, on the vertebral-body label (1) of the
label map as the appliance outputs it (after :mod:`appliance.postprocess`), with the
components 6-connected as :mod:`appliance.measure.bodies` splits them. There is **no
vertebral column** when any of these holds:

1. ``fragmented``: more than :data:`MAX_FRAGMENTS` components smaller than
   ``MIN_BODY_MM3`` (:mod:`appliance.measure.bodies`' speckle size). Measured: an
   untrained network gives ~2,700-3,900 such fragments on a phantom; the default model
   0 on the phantoms, 1 on the real abdomen CT, 5 on the real chest CT. Checked first: it
   is cheap and spares the plausibility rules thousands of components;
2. ``too_little``: after the plausibility rules (:func:`appliance.measure.plausibility.
   plausible_labels`, which drop blobs off the column) the components of at least
   ``MIN_BODY_MM3`` hold less than :data:`MIN_COLUMN_CM3` (nothing body-sized labelled);
3. ``too_much``: they hold more than :data:`MAX_COLUMN_CM3`, more vertebral body than a
   whole spine has (the label covers the patient, not the column).

A body count is not the rule: the real abdomen CT's T12-S1 bodies come out as one merged
component (297 cm³), and a cervical or lumbar scan has few bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from appliance.labels import Label
from appliance.measure.bodies import MIN_BODY_MM3
from appliance.measure.geometry import voxel_volume_mm3

#: [ours] More speckle fragments than this is model noise, not a segmentation.
MAX_FRAGMENTS = 100
#: [ours] Less body-sized vertebral body than this (cm³) is no column: one lumbar body is
#: ~30-50 cm³, two cervical bodies ~8 cm³; the real chest CT keeps 71 cm³, the abdomen 297.
MIN_COLUMN_CM3 = 10.0
#: [ours] More than this (cm³) is more than any spine: adult C2-L5 bodies total roughly
#: 400-700 cm³; the phantoms 343-368 cm³ (default model).
MAX_COLUMN_CM3 = 2000.0


@dataclass(frozen=True)
class ColumnFinding:
    """What the vertebral-body label holds; ``problem`` is None when a column is there."""

    components: int  # all components of the label, before plausibility
    fragments: int  # of those, smaller than MIN_BODY_MM3
    body_sized: int  # plausible components of at least MIN_BODY_MM3 (0 when not evaluated)
    body_sized_cm3: float
    largest_cm3: float
    problem: str | None  # None, "fragmented", "too_little" or "too_much"

    @property
    def found(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        """One clause for the error message."""
        if self.problem == "fragmented":
            return (f"the vertebral-body label is noise: {self.fragments} fragments smaller than "
                    f"{MIN_BODY_MM3 / 1000:g} cm³ (more than {MAX_FRAGMENTS}), largest component "
                    f"{self.largest_cm3:.1f} cm³")
        if self.problem == "too_much":
            return (f"{self.body_sized_cm3:.0f} cm³ labelled vertebral body, more than a whole spine "
                    f"(limit {MAX_COLUMN_CM3:g} cm³)")
        return (f"{self.body_sized} vertebral-body components of plausible size, {self.body_sized_cm3:.1f} cm³ "
                f"(at least {MIN_COLUMN_CM3:g} needed; largest component {self.largest_cm3:.1f} cm³)")


def _sizes_mm3(mask: np.ndarray, voxel_mm3: float) -> np.ndarray:
    lab, n = ndimage.label(mask)  # 6-connected, as bodies.find_bodies
    return np.bincount(lab.ravel(), minlength=n + 1)[1:] * voxel_mm3


def find_column(labels: np.ndarray, affine: np.ndarray) -> ColumnFinding:
    """Apply the module's rules to a label map ``(z, y, x)`` with its ``affine`` (LPS)."""
    from appliance.measure.plausibility import plausible_labels

    v = voxel_volume_mm3(np.asarray(affine, float))
    raw = _sizes_mm3(np.asarray(labels) == Label.VERTEBRAL_BODIES, v)
    fragments = int(np.count_nonzero(raw < MIN_BODY_MM3))
    largest = float(raw.max()) / 1000.0 if raw.size else 0.0
    if fragments > MAX_FRAGMENTS:
        return ColumnFinding(int(raw.size), fragments, 0, 0.0, largest, "fragmented")
    kept, _ = plausible_labels(labels, affine)
    sizes = _sizes_mm3(kept == Label.VERTEBRAL_BODIES, v)
    sized = sizes[sizes >= MIN_BODY_MM3]
    total = float(sized.sum()) / 1000.0
    problem = "too_little" if total < MIN_COLUMN_CM3 else "too_much" if total > MAX_COLUMN_CM3 else None
    return ColumnFinding(int(raw.size), fragments, int(sized.size), total, largest, problem)
