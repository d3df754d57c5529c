import numpy as np

from appliance.crop import CropConfig, find_crop
from appliance.postprocess import clean_labels, to_input_grid
from appliance.preprocess import resample
from appliance.volume import Volume


def test_spurious_components_removed_bodies_kept():
    lab = np.zeros((80, 40, 40), np.uint8)
    for k in range(6):                                   # six separate 'vertebral bodies'
        lab[5 + 12 * k: 13 + 12 * k, 10:20, 10:20] = 1
    lab[30:32, 30:32, 30:32] = 1                         # a speck of 'body' (8 mm³)
    lab[60:75, 25:38, 2:18] = 2                          # pelvis
    lab[2:4, 35:37, 35:37] = 2                           # spurious pelvis fragment
    lab[40:46, 30:36, 30:36] = 3                         # two femoral heads ...
    lab[40:46, 30:36, 2:8] = 3
    lab[70:72, 2:4, 30:32] = 3                           # ... and a third, tiny one
    lab[8, 14, 14] = 0                                   # a hole inside a body
    out = clean_labels(lab, (1.0, 1.0, 1.0))
    assert out[31, 31, 31] == 0 and out[3, 36, 36] == 0 and out[71, 3, 31] == 0
    assert out[8, 14, 14] == 1                           # hole filled
    from scipy import ndimage
    assert ndimage.label(out == 1)[1] == 6
    assert ndimage.label(out == 3)[1] == 2
    assert (out == 2).sum() == 15 * 13 * 16


def test_labels_resampled_back_align_with_the_input_grid(small_study):
    truth = small_study.labels
    # an oblique-free but flipped, anisotropic input grid
    flipped = Volume(truth.array[:, ::-1, :].copy(), truth.spacing_mm,
                     truth.index_to_lps(np.array([[0, truth.shape_zyx[1] - 1, 0]]))[0],
                     truth.direction @ np.diag([1, -1, 1]))
    work = resample(flipped, (3.0, 3.0, 3.0), is_label=True)
    back = to_input_grid(work, flipped)
    assert back.shape == flipped.shape_zyx
    for label in (1, 2, 3):
        a, b = back == label, flipped.array == label
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8
    # a crop of the working grid lands at the same place
    z0, y0, x0 = 20, 10, 12
    sub = Volume(work.array[z0:, y0:, x0:].copy(), work.spacing_mm,
                 work.index_to_lps(np.array([[x0, y0, z0]], float))[0], work.direction)
    back_crop = to_input_grid(sub, flipped, label_gaussian=False)
    inside = back_crop > 0
    assert inside.any() and np.mean(back_crop[inside] == to_input_grid(work, flipped, label_gaussian=False)[inside]) > 0.99


def test_crop_finds_the_bony_region(small_study):
    img = small_study.image
    spacing_zyx = img.spacing_mm[::-1]
    crop = find_crop(img.array.astype(np.float32), spacing_zyx, CropConfig(margin_mm=10), min_shape=(16, 32, 32))
    assert crop.source == "bone"
    labels = small_study.labels.array
    inside = np.zeros_like(labels, bool)
    inside[crop.slices] = True
    assert (labels[~inside] > 0).sum() == 0            # nothing labelled is cut away
    assert crop.fraction_of(img.shape_zyx) < 0.9       # and air around the body is skipped
    air = np.full((40, 50, 50), -1024.0, np.float32)
    assert find_crop(air, (1, 1, 1)).source == "full"
    assert find_crop(air, (1, 1, 1), CropConfig(enabled=False)).shape == (40, 50, 50)


def test_crop_row_boxes_follow_the_bone_slab_by_slab(small_study):
    img = small_study.image
    crop = find_crop(img.array.astype(np.float32), img.spacing_mm[::-1], CropConfig(margin_mm=10))
    labels = small_study.labels.array[crop.slices]
    widths = []
    for z0 in range(0, crop.shape[0] - 8, 8):
        box = crop.row_box(z0, z0 + 8)
        fg = labels[z0:z0 + 8] > 0
        if box is None:
            assert not fg.any()
            continue
        y0, y1, x0, x1 = box
        inside = np.zeros_like(fg)
        inside[:, y0:y1, x0:x1] = True
        assert not (fg & ~inside).any()          # nothing labelled falls outside its slab's box
        widths.append((y1 - y0) * (x1 - x0))
    assert min(widths) < 0.5 * crop.shape[1] * crop.shape[2]   # spine-only slabs are narrow


def test_upsampled_labels_are_round_not_faceted(monkeypatch):
    """A ball voxelised at 3 mm and brought to a 1 mm grid: the Gaussian before the linear
    interpolation (LABEL_SIGMA_VOX) gets closer to the true ball than linear alone."""
    import appliance.postprocess as pp
    from appliance.postprocess import to_input_grid
    from appliance.volume import Volume

    def ball(shape, spacing, centre_mm=(24.0, 24.0, 24.0), radius_mm=13.0):
        zz, yy, xx = np.indices(shape, dtype=float)
        d2 = sum(((g + 0.5) * spacing - c) ** 2 for g, c in zip((xx, yy, zz), centre_mm))
        return (d2 <= radius_mm ** 2).astype(np.uint8)

    coarse = Volume(ball((16, 16, 16), 3.0) * 2, (3.0, 3.0, 3.0), (1.5, 1.5, 1.5))
    fine = Volume(np.zeros((48, 48, 48), np.uint8), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    truth = ball((48, 48, 48), 1.0).astype(bool)

    def dice(labels):
        got = labels == 2
        return 2 * (got & truth).sum() / (got.sum() + truth.sum())

    smoothed = dice(to_input_grid(coarse, fine))
    # a grid as fine as the labels' is not smoothed: identity stays exact
    assert np.array_equal(to_input_grid(coarse, coarse), coarse.array)
    monkeypatch.setattr(pp, "LABEL_SIGMA_VOX", 0.0)
    linear = dice(to_input_grid(coarse, fine))
    nearest = dice(to_input_grid(coarse, fine, label_gaussian=False))
    print(f"Dice vs the true ball: smoothed {smoothed:.4f}, linear {linear:.4f}, nearest {nearest:.4f}")
    assert smoothed > linear and smoothed > nearest and smoothed > 0.95
