"""STL: closed, outward, volume-faithful meshes in the DICOM patient frame; printable
variant in one piece; Encapsulated STL carries the same bytes in the same frame."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes
from stl import mesh as stl_mesh

from appliance.outputs.connectors import join_parts
from appliance.outputs.encapsulated_stl import ENCAPSULATED_STL_STORAGE
from appliance.outputs.seg import segment_label_map
from appliance.outputs.stl import check_printable, mask_to_mesh
from appliance.volume import Volume

NAMES = ("vertebral_bodies", "pelvis", "femoral_head_right", "femoral_head_left", "combined")


def _masks(labels: Volume) -> dict[str, np.ndarray]:
    segments, specs = segment_label_map(labels)
    masks = {s.key: segments == k + 1 for k, s in enumerate(specs)}
    masks["combined"] = segments > 0
    return masks


def _load(path) -> trimesh.Trimesh:
    data = stl_mesh.Mesh.from_file(str(path))
    mesh = trimesh.Trimesh(data.vectors.reshape(-1, 3), np.arange(len(data.vectors) * 3).reshape(-1, 3))
    mesh.merge_vertices()
    return mesh


def _near_surface(mask: np.ndarray, labels: Volume, vertices_mm: np.ndarray) -> np.ndarray:
    """True where the voxel nearest the vertex (through the inverse affine) has both mask
    and background voxels in its 3×3×3 neighbourhood, i.e. lies on the mask surface."""
    ijk = np.rint(labels.lps_to_index(vertices_mm)).astype(int)  # (x, y, z)
    padded = np.pad(mask, 1)
    boundary = ndimage.maximum_filter(padded, 3) & ~ndimage.minimum_filter(padded, 3)
    inside = np.all((ijk >= -1) & (ijk <= np.asarray(mask.shape[::-1])), axis=1)
    out = np.zeros(len(ijk), bool)
    k = ijk[inside] + 1
    out[inside] = boundary[k[:, 2], k[:, 1], k[:, 0]]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_mesh_closed_volume_and_surface(written, name):
    labels = written.study.labels
    mask = _masks(labels)[name]
    mesh = _load(written.paths[f"stl_{name}"])
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    voxel_mm3 = float(np.prod(labels.spacing_mm))
    assert mesh.volume == pytest.approx(mask.sum() * voxel_mm3, rel=0.03)
    assert _near_surface(mask, labels, mesh.vertices).all()


def test_printable_is_one_piece_containing_the_model(written):
    mesh = _load(written.paths["stl_printable"])
    combined = _load(written.paths["stl_combined"])
    assert mesh.is_watertight and mesh.volume > 0
    assert len(mesh.split(only_watertight=False)) == 1
    assert len(combined.split(only_watertight=False)) > 10  # the parts really were separate
    assert mesh.volume == pytest.approx(combined.volume, rel=0.03)


def test_frame_and_normals_with_flipped_axes():
    """A sphere in a volume whose x and z axes run backwards (det < 0): the mesh lands at
    the planted LPS centre with outward normals."""
    n, spacing = 40, np.array([1.5, 1.0, 2.0])
    z, y, x = np.mgrid[:n, :n, :n]
    direction = np.diag([-1.0, 1.0, 1.0])
    vol = Volume(np.zeros((n, n, n), np.uint8), tuple(spacing), (30.0, -20.0, 100.0), direction)
    centre_mm = vol.index_to_lps(np.array([[18.0, 21.0, 20.0]]))[0]
    pts = vol.index_to_lps(np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1))
    mask = (np.linalg.norm(pts - centre_mm, axis=1) <= 12.0).reshape(n, n, n)
    mesh = mask_to_mesh(mask, vol.affine, max_triangles=2000)
    assert mesh.is_watertight and mesh.volume > 0 and len(mesh.faces) <= 2000
    assert np.allclose(mesh.center_mass, centre_mm, atol=0.3)
    assert mesh.volume == pytest.approx(mask.sum() * spacing.prod(), rel=0.03)
    outward = np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center - centre_mm)
    assert (outward > 0).mean() > 0.99


def test_join_parts_on_separate_blocks():
    mask = np.zeros((30, 20, 20), bool)
    mask[2:8, 5:15, 5:15] = mask[12:18, 5:15, 5:15] = mask[22:28, 2:6, 2:6] = True
    joined, struts = join_parts(mask, np.diag([1.0, 1.0, 1.0, 1.0]), radius_mm=1.5)
    assert struts == 2 and (joined >= mask).all()
    assert ndimage.label(joined, ndimage.generate_binary_structure(3, 1))[1] == 1


def test_decimation_budget(written):
    labels = written.study.labels
    mask = labels.array == 1
    mesh = mask_to_mesh(mask, labels.affine, max_triangles=8000)
    assert mesh.is_watertight and len(mesh.faces) <= 8000 * 1.1


@pytest.mark.parametrize("name", ("pelvis", "printable"))
def test_encapsulated_stl(written, name):
    ds = pydicom.dcmread(written.paths[f"stl_dicom_{name}"])
    stl_bytes = written.paths[f"stl_{name}"].read_bytes()
    assert ds.SOPClassUID == ENCAPSULATED_STL_STORAGE and ds.Modality == "M3D"
    assert ds.MIMETypeOfEncapsulatedDocument == "model/stl"
    assert ds.EncapsulatedDocument[: ds.EncapsulatedDocumentLength] == stl_bytes
    assert ds.FrameOfReferenceUID == written.source.frame_of_reference_uid
    assert ds.StudyInstanceUID == written.source.study_instance_uid
    assert {i.ReferencedSOPInstanceUID for i in ds.SourceInstanceSequence} == \
        {d.SOPInstanceUID for d in written.source.datasets}
    assert ds.MeasurementUnitsCodeSequence[0].CodeValue == "mm"


def test_join_parts_fills_enclosed_voids():
    """A hollow part would mesh as an outer and an inner shell: the printable mask is solid."""
    mask = np.zeros((20, 20, 20), bool)
    mask[3:17, 3:17, 3:17] = True
    mask[7:13, 7:13, 7:13] = False
    joined, struts = join_parts(mask, np.eye(4))
    assert struts == 0 and joined[10, 10, 10]
    assert len(mask_to_mesh(joined, np.eye(4), None).split(only_watertight=False)) == 1


def test_noisy_bone_mask_still_meshes_closed(small_study):
    """A threshold of every bright voxel (ribs, arms, noise: what a bad model could
    return) holds parts on which Lewiner marching cubes gives edges shared by four
    triangles; the surface must still come out closed and manifold."""

    from appliance.outputs.stl import _surface
    from appliance.postprocess import clean_labels

    image = small_study.image
    mask = clean_labels((image.array > 250).astype(np.uint8), image.spacing_mm) == 1
    parts, n = ndimage.label(mask, ndimage.generate_binary_structure(3, 3))
    lewiner_failures = 0
    for k, sl in enumerate(ndimage.find_objects(parts), start=1):
        padded = np.pad(parts[sl] == k, 1).astype(np.float32)
        v, f, _, _ = marching_cubes(padded, level=0.5, method="lewiner", allow_degenerate=False)
        lewiner_failures += not trimesh.Trimesh(v, f, process=True).is_watertight
        v, f = _surface(padded)
        mesh = trimesh.Trimesh(v, f, process=True)
        assert mesh.is_watertight and mesh.is_winding_consistent and abs(mesh.volume) > 0, k
    assert lewiner_failures >= 1  # the case this guards against is really in the data
    full = mask_to_mesh(mask, image.affine)
    check_printable(full, "noisy")


def test_meshes_in_one_process_equal_those_with_a_printable_worker(written, tmp_path):
    """write_outputs made the printable model in a second process (the default on 2+ CPUs);
    doing everything in one process gives the same meshes."""
    from appliance.outputs.writer import write_meshes

    here = write_meshes(written.study.labels, tmp_path, max_triangles=60_000, workers=1)
    for name, report in here.items():
        other = _load(written.paths[f"stl_{name}"])
        mine = _load(report.path)
        assert len(mine.faces) == len(other.faces), name
        assert np.allclose(np.sort(mine.vertices, axis=0), np.sort(other.vertices, axis=0), atol=1e-4), name
