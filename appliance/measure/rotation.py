"""Left–right axis of a vertebral body, for axial rotation.

Definition used: the body's left–right axis is the major principal axis of its voxels'
second moments in the plane perpendicular to the body axis (the mean endplate normal),
pointing to the patient's left (+x). A body's cross-section is mirror-symmetric about
its mid-sagittal plane and wider than deep, so that axis is the left–right one. When the
cross-section is nearly circular (principal-axis ratio below ``MIN_AXIS_RATIO``) the
axis is undefined and None is returned.
"""

from __future__ import annotations

import numpy as np

from appliance.measure.bodies import Body
from appliance.measure.geometry import plane_basis, unit, voxel_points_mm

#: Smallest width/depth ratio (square root of the eigenvalue ratio) trusted for an axis.
MIN_AXIS_RATIO = 1.08


def left_axis(body: Body, affine: np.ndarray, body_axis: np.ndarray) -> tuple[np.ndarray | None, float]:
    """(unit left–right axis or None, width/depth ratio of the cross-section)."""
    pts = voxel_points_mm(body.mask, affine, body.offset_zyx)
    e1, e2 = plane_basis(body_axis)
    q = (pts - pts.mean(axis=0)) @ np.c_[e1, e2]
    evals, evecs = np.linalg.eigh(np.cov(q.T))
    ratio = float(np.sqrt(evals[1] / max(evals[0], 1e-12)))
    if ratio < MIN_AXIS_RATIO:
        return None, ratio
    major = evecs[0, 1] * e1 + evecs[1, 1] * e2
    major = unit(major)
    return (major if major[0] >= 0 else -major), ratio
