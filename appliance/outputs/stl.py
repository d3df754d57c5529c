"""Surface meshes of the masks for 3D printing, in DICOM patient LPS millimetres.

Per 26-connected part: pad by one voxel (closed surface at the volume edge) → marching
cubes (scikit-image, level 0.5, Lewiner; fallbacks in :func:`_surface`) in voxel indices → LPS mm through the volume
affine → Taubin smoothing (λ/μ, shrinks far less than Laplacian) → outward normals →
quadric decimation (fast-simplification) to the part's share of the triangle budget,
kept only while the surface stays closed → watertight/manifold check (trimesh) →
binary STL (numpy-stl). STL has no unit field: the unit is mm (stated in the
Encapsulated STL's Measurement Units Code Sequence). The printable variant joins the isolated parts with cylindrical struts
rasterised into the mask before meshing (see :mod:`connectors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes
from stl import mesh as stl_mesh

from appliance.errors import OutputError
from appliance.volume import Volume

SMOOTH_ITERATIONS = 10
DEFAULT_MAX_TRIANGLES = 200_000


@dataclass(frozen=True)
class MeshReport:
    """What was written, for logs, the benchmark and the tests."""

    name: str
    path: Path
    triangles: int
    volume_mm3: float
    mask_volume_mm3: float
    watertight: bool
    bodies: int

    @property
    def volume_error(self) -> float:
        return abs(self.volume_mm3 - self.mask_volume_mm3) / self.mask_volume_mm3


_TWENTY_SIX = ndimage.generate_binary_structure(3, 3)


def bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of a boolean (z, y, x) mask, from its axis projections (fast)."""
    out = []
    for axis in range(3):
        nz = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if nz.size == 0:
            return None
        out.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


def shell_count(mesh: trimesh.Trimesh) -> int:
    """Number of edge-connected surface shells (cheaper than ``mesh.split``)."""
    groups = trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(mesh.faces)))
    return len(groups)


def signed_volume_mm3(mesh: trimesh.Trimesh) -> float:
    """Enclosed volume by the divergence theorem (positive for outward normals)."""
    a, b, c = (mesh.vertices[mesh.faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _surface(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of a padded 0/1 part whose surface is a closed 2-manifold.

    Lewiner first (topologically consistent on most data); its case tables can still
    give edges shared by four triangles on some binary configurations (seen on noisy
    masks), so Lorensen is tried next, then the same part smoothed by a 0.5-voxel
    Gaussian, which removes the exact ties that make the cases ambiguous.
    """
    candidates = ((padded, "lewiner"), (padded, "lorensen"),
                  (ndimage.gaussian_filter(padded, 0.5), "lewiner"))
    for field, method in candidates:
        verts, faces, _, _ = marching_cubes(field, level=0.5, method=method, allow_degenerate=False)
        mesh = trimesh.Trimesh(verts, faces, process=True)
        if mesh.is_watertight and mesh.is_winding_consistent:
            return mesh.vertices, mesh.faces
    return verts, faces  # the caller's printable check reports it


def _component_mesh(part: np.ndarray, offset_zyx: np.ndarray, affine: np.ndarray,
                    smooth_iterations: int) -> trimesh.Trimesh:
    verts_zyx, faces = _surface(np.pad(part, 1).astype(np.float32))
    ijk = verts_zyx[:, ::-1] + (offset_zyx - 1)[::-1]
    mesh = trimesh.Trimesh(ijk @ affine[:3, :3].T + affine[:3, 3], faces, process=True)
    if smooth_iterations:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=smooth_iterations)
    if signed_volume_mm3(mesh) < 0:  # the affine flips handedness
        mesh.invert()
    return mesh


def mask_to_mesh(mask: np.ndarray, affine: np.ndarray, max_triangles: int | None = DEFAULT_MAX_TRIANGLES,
                 smooth_iterations: int = SMOOTH_ITERATIONS) -> trimesh.Trimesh:
    """Closed, outward-oriented surface of a boolean (z, y, x) mask, vertices in LPS mm.

    Each 26-connected part is meshed on its own box (parts at least one voxel apart,
    so their surfaces never touch); the triangle budget is shared by face count.
    """
    box = bbox(mask)
    if box is None:
        raise OutputError("cannot mesh an empty mask")
    parts, _ = ndimage.label(mask[box], _TWENTY_SIX)
    origin = np.array([s.start for s in box])
    meshes = [_component_mesh(parts[sl] == k, origin + [s.start for s in sl], affine, smooth_iterations)
              for k, sl in enumerate(ndimage.find_objects(parts), start=1)]
    total = sum(len(m.faces) for m in meshes)
    if max_triangles and total > max_triangles:
        meshes = [_decimate_body(m, int(max_triangles * len(m.faces) / total)) for m in meshes]
    return meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)


def _closed(mesh: trimesh.Trimesh, shells: int) -> bool:
    return mesh.is_watertight and mesh.is_winding_consistent and shell_count(mesh) == shells


def _decimate_body(body: trimesh.Trimesh, target: int) -> trimesh.Trimesh:
    """Quadric decimation (fast-simplification) of one part: straight to ``target`` when
    that keeps it closed with the same shells, else in passes of at most 20 % stopping
    at the last closed result (a closed surface wins over the budget)."""
    if target >= len(body.faces):
        return body
    shells = shell_count(body)
    first = body.simplify_quadric_decimation(face_count=max(target, 4))
    first.merge_vertices()
    if _closed(first, shells):
        return first
    current = body
    while len(current.faces) > target:
        step = current.simplify_quadric_decimation(face_count=max(target, int(len(current.faces) * 0.8)))
        step.merge_vertices()
        if not _closed(step, shells) or len(step.faces) >= len(current.faces):
            break
        current = step
    return current


def check_printable(mesh: trimesh.Trimesh, name: str) -> None:
    """Raise :class:`OutputError` unless the mesh is watertight, manifold and outward."""
    if not (mesh.is_watertight and mesh.is_winding_consistent and mesh.is_volume):
        raise OutputError(f"mesh {name!r} is not a closed manifold volume")
    if mesh.volume <= 0:
        raise OutputError(f"mesh {name!r} has inward normals")


def write_binary_stl(mesh: trimesh.Trimesh, path: str | Path, name: str) -> Path:
    """Binary STL (numpy-stl) with facet normals from the (outward) winding."""
    path = Path(path)
    out = stl_mesh.Mesh(np.zeros(len(mesh.faces), dtype=stl_mesh.Mesh.dtype), name=name.encode()[:80])
    out.vectors[:] = mesh.vertices[mesh.faces]
    out.update_normals()
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(path), mode=stl_mesh.stl.Mode.BINARY)
    return path


def export_mask(mask: np.ndarray, labels: Volume, path: str | Path, name: str,
                max_triangles: int | None = DEFAULT_MAX_TRIANGLES) -> MeshReport:
    """Mesh ``mask`` (label map grid), check it and write it as binary STL."""
    mesh = mask_to_mesh(mask, labels.affine, max_triangles)
    check_printable(mesh, name)
    written = write_binary_stl(mesh, path, name)
    voxel_mm3 = float(abs(np.linalg.det(labels.affine[:3, :3])))
    return MeshReport(name, written, len(mesh.faces), float(mesh.volume), float(mask.sum()) * voxel_mm3,
                      bool(mesh.is_watertight), shell_count(mesh))
