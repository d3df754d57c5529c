"""Is there a vertebral column in a segmentation at all? (issue 22)

A model that does not segment (untrained, random weights, the wrong bundle) or an image
that is no spine scan produces label noise; meshing and measuring it costs a minute and
hundreds of warnings. :func:`find_column` decides, on the vertebral-body label (1) of the
label map as the appliance outputs it (after :mod:`appliance.postprocess`), with the
components 6-connected as :mod:`appliance.measure.bodies` splits them. There is **no
vertebral column** when any of these holds:

1. ``fragmented``: more than :data:`MAX_COMPONENTS` components of any size (a column has
   ~24 bodies, C2-S1). Measured with the default model: 2 on the real abdomen CT, 23 on
   the real chest CT, 15-23 on phantoms; two untrained networks: 217 and 812 on the
   abdomen CT (its 3 mm grid is the working grid, so post-processing had removed every
   speck), 3,111 and 3,898 on a phantom. Checked first: it is cheap and spares the
   plausibility rules thousands of components;
2. ``too_little``: after the plausibility rules (:func:`appliance.measure.plausibility.
   plausible_labels`, which drop blobs off the column) the components of at least
   ``MIN_BODY_MM3`` hold less than :data:`MIN_COLUMN_CM3` (nothing body-sized labelled);
3. ``too_much``: they hold more than :data:`MAX_COLUMN_CM3`, more vertebral body than a
   whole spine has (the label covers the patient, not the column).

A body count is not the rule: the real abdomen CT's T12-S1 bodies come out as one merged
component (297 cm³), and a cervical or lumbar scan has few bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from appliance.labels import Label
from appliance.measure.bodies import MIN_BODY_MM3
from appliance.measure.geometry import voxel_volume_mm3

#: [ours] More components than this is model noise, not a column (4x the ~24 bodies).
MAX_COMPONENTS = 100
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
    fragments: int  # of those, smaller than MIN_BODY_MM3 (speckle)
    body_sized: int  # plausible components of at least MIN_BODY_MM3 (0 when not evaluated)
    body_sized_cm3: float
    largest_cm3: float
    problem: str | None  # None, "fragmented", "too_little" or "too_much"
    #: ``plausible_labels(labels, affine)`` when it was run (not for "fragmented"): handed
    #: on to :func:`appliance.measure.api.measure` so that the rules run once per study
    plausible: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def found(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        """One clause for the error message."""
        if self.problem == "fragmented":
            return (f"the vertebral-body label is noise: {self.components} components (more than "
                    f"{MAX_COMPONENTS}; {self.fragments} smaller than {MIN_BODY_MM3 / 1000:g} cm³), largest "
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
    if raw.size > MAX_COMPONENTS:
        return ColumnFinding(int(raw.size), fragments, 0, 0.0, largest, "fragmented")
    kept, rejected = plausible_labels(labels, affine)
    sizes = _sizes_mm3(kept == Label.VERTEBRAL_BODIES, v)
    sized = sizes[sizes >= MIN_BODY_MM3]
    total = float(sized.sum()) / 1000.0
    problem = "too_little" if total < MIN_COLUMN_CM3 else "too_much" if total > MAX_COLUMN_CM3 else None
    return ColumnFinding(int(raw.size), fragments, int(sized.size), total, largest, problem, (kept, rejected))
