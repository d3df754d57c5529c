"""Soft Dice with partial labels, and the paper's deep-supervision sum.

Partial labels (JoVE 67781 Table 2: not every case has every structure drawn): for a
case, a structure that is not annotated is *ignored*, not treated as background. Where
it is not drawn the label map says 0, so the voxel may be background *or* that
structure; the case's softmax probabilities of background and of its unannotated
structures are therefore summed into background (the "marginal" loss of Shi et al.,
Med. Image Anal. 2021), and the unannotated logits enter that sum detached. Hence

- predicting the unannotated structure on its (unlabelled) voxels costs exactly what
  predicting background there costs: nothing, and those voxels are not background
  false negatives ("excluded from background's Dice");
- the gradient with respect to an unannotated channel is exactly zero for that case:
  the case teaches nothing about a structure it does not show;
- an annotated structure predicted as background is still a false negative.

Dice per class: ``(2 Σ p g + s) / (Σ p + Σ g + s)``. With ``batch_dice`` (default) the
sums run over the voxels of every case *that annotates the class* in the batch, and
the loss is ``1 - mean`` over the classes annotated somewhere in the batch; otherwise
per (case, annotated class) pair. Batch Dice (as nnU-Net) matters for 16-slice
windows: many windows hold no pelvis or femoral head, and a per-window Dice of an
absent class scores 1 for predicting nothing, which rewards all-background output.
Deep supervision: ``total = loss_3 + alpha * (loss_0 + loss_1 + loss_2)`` (paper).
"""

from __future__ import annotations

from training.torch_import import require_torch

torch = require_torch("The training losses")
F = torch.nn.functional


def one_hot(labels, num_classes: int):
    """``(N, D, H, W)`` integer labels → ``(N, K, D, H, W)`` float one-hot."""
    return F.one_hot(labels.long(), num_classes).permute(0, 4, 1, 2, 3).float()


def downsample_target(target, shape):
    """Area-average a one-hot target to ``shape`` (D, H, W): soft labels that keep thin
    structures' share instead of dropping them as nearest-neighbour sampling can."""
    if tuple(target.shape[2:]) == tuple(shape):
        return target
    return F.adaptive_avg_pool3d(target, tuple(int(s) for s in shape))


def masked_dice_loss(logits, target, annotated, smooth: float = 1.0, batch_dice: bool = True):
    """Partial-label soft Dice loss.

    logits ``(N, K, D, H, W)``; target ``(N, K, D, H, W)`` one-hot or soft;
    annotated ``(N, K)`` bool (column 0, background, is always True).
    Returns a scalar and the per-class Dice ``(K,)`` (NaN for a class no case annotates).
    """
    annotated = annotated.to(device=logits.device, dtype=torch.bool).clone()
    annotated[:, 0] = True
    mask = annotated[:, :, None, None, None]
    logits = logits.float()
    prob = torch.softmax(torch.where(mask, logits, logits.detach()), dim=1)
    merged = (prob * ~mask).sum(dim=1)  # mass on unannotated structures → background
    prob = torch.cat([prob[:, :1] + merged[:, None], prob[:, 1:] * mask[:, 1:]], dim=1)
    dims = (2, 3, 4)
    w = annotated.float()
    inter = (prob * target).sum(dims) * w  # (N, K), zero where not annotated
    denom = (prob.sum(dims) + target.sum(dims)) * w
    present = annotated.any(dim=0)
    if batch_dice:
        dice = (2 * inter.sum(0) + smooth) / (denom.sum(0) + smooth)  # (K,)
        loss = 1.0 - dice[present].mean()
        return loss, dice.detach().masked_fill(~present, float("nan"))
    dice = (2 * inter + smooth) / (denom + smooth)  # (N, K)
    loss = 1.0 - (dice * w).sum() / w.sum()
    per_class = (dice.detach() * w).sum(0) / w.sum(0).clamp(min=1)
    return loss, per_class.masked_fill(~present, float("nan"))


def deep_supervision_loss(outputs, labels, annotated, alpha: float, smooth: float = 1.0,
                          batch_dice: bool = True):
    """``loss_3 + alpha * (loss_0 + loss_1 + loss_2)``; ``outputs`` coarsest first.

    Returns (total, [loss_0..loss_3] as floats, full-resolution per-class Dice)."""
    num_classes = outputs[-1].shape[1]
    target = one_hot(labels, num_classes)
    losses = []
    dice_full = None
    for out in outputs:
        loss, dice = masked_dice_loss(out, downsample_target(target, out.shape[2:]), annotated, smooth,
                                      batch_dice)
        losses.append(loss)
        dice_full = dice
    total = combine_deep_supervision(losses, alpha)
    return total, [float(v.detach()) for v in losses], dice_full


def combine_deep_supervision(losses, alpha: float):
    """The paper's formula for any number of depths: last (full resolution) + alpha × rest."""
    total = losses[-1]
    for extra in losses[:-1]:
        total = total + alpha * extra
    return total
