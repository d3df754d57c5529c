"""Partial-label Dice and the paper's deep-supervision formula."""

from __future__ import annotations

import pytest

import torch  # the train extra; `make test` installs it

from training.losses import (
    combine_deep_supervision,
    deep_supervision_loss,
    downsample_target,
    masked_dice_loss,
    one_hot,
)

BG, BODY, PELVIS, HEADS = 0, 1, 2, 3


def _scene():
    """One case 8×16×16: a body cube (label 1) and a pelvis cube region."""
    labels = torch.zeros(1, 8, 16, 16, dtype=torch.long)
    labels[:, 2:6, 2:6, 2:6] = BODY
    pelvis = torch.zeros(1, 8, 16, 16, dtype=torch.bool)
    pelvis[:, 2:6, 9:14, 9:14] = True
    return labels, pelvis


def _logits(labels, pelvis_region, predict_pelvis: bool):
    """Confident logits: the reference labels, plus pelvis on the region if asked."""
    target = labels.clone()
    if predict_pelvis:
        target[pelvis_region] = PELVIS
    return one_hot(target, 4) * 20.0 - 10.0


def test_unannotated_structure_costs_nothing_annotated_one_does():
    labels, pelvis = _scene()
    unannotated = torch.tensor([[True, True, False, True]])
    # the pelvis exists but is not drawn: the label map says 0 there
    bg_there, _ = masked_dice_loss(_logits(labels, pelvis, False), one_hot(labels, 4), unannotated)
    pel_there, _ = masked_dice_loss(_logits(labels, pelvis, True), one_hot(labels, 4), unannotated)
    assert float(pel_there) == pytest.approx(float(bg_there), abs=1e-6)

    # the same scene with the pelvis drawn: predicting background on it is penalised
    drawn = labels.clone()
    drawn[pelvis] = PELVIS
    annotated = torch.ones(1, 4, dtype=torch.bool)
    miss, _ = masked_dice_loss(_logits(labels, pelvis, False), one_hot(drawn, 4), annotated)
    hit, _ = masked_dice_loss(_logits(labels, pelvis, True), one_hot(drawn, 4), annotated)
    assert float(miss) > float(hit) + 0.2


def test_treating_unannotated_as_background_would_penalise():
    """Control: with every structure marked annotated the same prediction does cost —
    so the equality above comes from the mask, not from an insensitive loss."""
    labels, pelvis = _scene()
    everything = torch.ones(1, 4, dtype=torch.bool)
    bg_there, _ = masked_dice_loss(_logits(labels, pelvis, False), one_hot(labels, 4), everything)
    pel_there, _ = masked_dice_loss(_logits(labels, pelvis, True), one_hot(labels, 4), everything)
    assert float(pel_there) > float(bg_there) + 0.1


@pytest.mark.parametrize("batch_dice", [True, False])
def test_gradient_of_unannotated_channel_is_zero_per_case(batch_dice):
    torch.manual_seed(0)
    labels, pelvis = _scene()
    labels = labels.repeat(2, 1, 1, 1)
    labels[1][pelvis[0]] = PELVIS
    logits = torch.randn(2, 4, 8, 16, 16, requires_grad=True)
    annotated = torch.tensor([[True, True, False, False], [True, True, True, False]])
    loss, dice = masked_dice_loss(logits, one_hot(labels, 4), annotated, batch_dice=batch_dice)
    loss.backward()
    g = logits.grad
    assert torch.all(g[0, 2:] == 0)  # case 0: pelvis and heads not drawn
    assert torch.all(g[1, 3] == 0)  # case 1: heads not drawn
    assert g[0, :2].abs().sum() > 0
    assert g[1, 2].abs().sum() > 0  # case 1 annotates the pelvis: it learns
    assert torch.isnan(dice[3]) and not torch.isnan(dice[:3]).any()


def test_background_always_counts_even_if_marked_unannotated():
    labels, _ = _scene()
    logits = torch.randn(1, 4, 8, 16, 16)
    a, _ = masked_dice_loss(logits, one_hot(labels, 4), torch.tensor([[False, True, True, True]]))
    b, _ = masked_dice_loss(logits, one_hot(labels, 4), torch.tensor([[True, True, True, True]]))
    assert float(a) == pytest.approx(float(b))


def test_batch_dice_ignores_windows_without_the_structure():
    """A window without bodies and a window with them: predicting nothing is not
    rewarded by the empty window (batch Dice), unlike per-window Dice."""
    labels, _ = _scene()
    labels = torch.cat([labels, torch.zeros_like(labels)])
    nothing = one_hot(torch.zeros_like(labels), 4) * 20 - 10
    ann = torch.ones(2, 4, dtype=torch.bool)
    batch, _ = masked_dice_loss(nothing, one_hot(labels, 4), ann, batch_dice=True)
    per_window, _ = masked_dice_loss(nothing, one_hot(labels, 4), ann, batch_dice=False)
    assert float(batch) > float(per_window) + 0.1


def test_perfect_prediction_has_near_zero_loss():
    labels, _ = _scene()
    loss, _ = masked_dice_loss(one_hot(labels, 4) * 40 - 20, one_hot(labels, 4), torch.ones(1, 4, dtype=bool))
    assert float(loss) < 1e-3


def test_deep_supervision_formula_is_the_papers():
    losses = [torch.tensor(v) for v in (0.5, 0.4, 0.3, 0.2)]
    assert float(combine_deep_supervision(losses, 0.8)) == pytest.approx(0.2 + 0.8 * (0.5 + 0.4 + 0.3))
    torch.manual_seed(1)
    labels, _ = _scene()
    outs = [torch.randn(1, 4, *s) for s in ((2, 4, 4), (4, 8, 8), (8, 8, 8), (8, 16, 16))]
    annotated = torch.tensor([[True, True, False, True]])
    total, parts, _ = deep_supervision_loss(outs, labels, annotated, alpha=0.64)
    target = one_hot(labels, 4)
    manual = [float(masked_dice_loss(o, downsample_target(target, o.shape[2:]), annotated)[0]) for o in outs]
    assert parts == pytest.approx(manual)
    assert float(total) == pytest.approx(manual[3] + 0.64 * sum(manual[:3]), rel=1e-6)


def test_downsampled_target_keeps_class_shares():
    labels, _ = _scene()
    t = one_hot(labels, 4)
    small = downsample_target(t, (4, 8, 8))
    assert small.shape == (1, 4, 4, 8, 8)
    assert torch.allclose(small.sum(1), torch.ones(1, 4, 8, 8))
    assert torch.allclose(small.mean((2, 3, 4)), t.mean((2, 3, 4)))
