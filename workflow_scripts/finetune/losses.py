"""Classification losses for imbalanced classes (the ECE228 report's comparison): cross-entropy,
focal, soft Dice and one-vs-rest binary cross-entropy, all on logits of shape (batch, classes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .settings import FinetuningSettings

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: torch.Tensor | None) -> torch.Tensor:
    """FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t, averaged over the batch (Lin et al. 2017)."""
    log_p_t = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    weight = (1 - log_p_t.exp()) ** gamma
    if alpha is not None:
        weight = weight * alpha[targets]
    return -(weight * log_p_t).mean()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of the soft Dice coefficient between softmax and one-hot targets."""
    probabilities = logits.softmax(dim=-1)
    one_hot = F.one_hot(targets, logits.shape[-1]).to(probabilities.dtype)
    overlap = (probabilities * one_hot).sum(dim=0)
    dice = (2 * overlap + smooth) / (probabilities.sum(dim=0) + one_hot.sum(dim=0) + smooth)
    return 1 - dice.mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCEWithLogits on one-hot targets: every class scored as its own yes/no question."""
    return F.binary_cross_entropy_with_logits(logits, F.one_hot(targets, logits.shape[-1]).to(logits.dtype))


def class_weights(train_labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse class frequency in the training cells, scaled to mean 1 over the classes present."""
    counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)
    return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


def make_loss(settings: FinetuningSettings, train_labels: np.ndarray, n_classes: int) -> Loss:
    """The loss named by settings.loss, with focal alpha a number, 'balanced' or null."""
    name = settings.loss
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "dice":
        return dice_loss
    if name == "bce":
        return bce_loss
    alpha_setting = settings.focal_alpha
    if alpha_setting == "balanced":
        alpha = class_weights(train_labels, n_classes)
    elif alpha_setting is None:
        alpha = None
    else:
        alpha = torch.full((n_classes,), float(alpha_setting))
    return lambda logits, targets: focal_loss(logits, targets, settings.focal_gamma,
                                              None if alpha is None else alpha.to(logits.device))
