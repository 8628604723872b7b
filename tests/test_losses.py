"""Each loss against a value computed by hand, and class weighting."""

import math

import numpy as np
import pytest
import torch
from conftest import DEFAULT_CONFIG_PATH

from workflow_scripts.core.config import load_config
from workflow_scripts.finetune.losses import (
    bce_loss,
    class_weights,
    dice_loss,
    focal_loss,
    make_loss,
)
from workflow_scripts.finetune.settings import FinetuningSettings

FINETUNING = load_config(DEFAULT_CONFIG_PATH)["finetuning"]
LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
TARGETS = torch.tensor([0, 2])


def softmax_rows():
    return [[math.exp(v) / sum(math.exp(w) for w in row) for v in row] for row in LOGITS.tolist()]


def test_focal_loss_by_hand():
    p = softmax_rows()
    p_t = [p[0][0], p[1][2]]
    expected = -sum((1 - q) ** 2 * math.log(q) for q in p_t) / 2
    assert focal_loss(LOGITS, TARGETS, gamma=2.0, alpha=None).item() == pytest.approx(expected, rel=1e-6)
    alpha = torch.tensor([0.25, 1.0, 4.0])
    weighted = -(0.25 * (1 - p_t[0]) ** 2 * math.log(p_t[0]) + 4.0 * (1 - p_t[1]) ** 2 * math.log(p_t[1])) / 2
    assert focal_loss(LOGITS, TARGETS, gamma=2.0, alpha=alpha).item() == pytest.approx(weighted, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    expected = torch.nn.functional.cross_entropy(LOGITS, TARGETS).item()
    assert focal_loss(LOGITS, TARGETS, gamma=0.0, alpha=None).item() == pytest.approx(expected, rel=1e-6)


def test_dice_loss_by_hand():
    p = softmax_rows()
    one_hot = [[1, 0, 0], [0, 0, 1]]
    dice = []
    for c in range(3):
        overlap = sum(p[i][c] * one_hot[i][c] for i in range(2))
        dice.append((2 * overlap + 1) / (sum(p[i][c] for i in range(2)) + sum(one_hot[i][c] for i in range(2)) + 1))
    assert dice_loss(LOGITS, TARGETS).item() == pytest.approx(1 - sum(dice) / 3, rel=1e-6)


def test_bce_loss_by_hand():
    one_hot = [[1, 0, 0], [0, 0, 1]]
    terms = []
    for row, targets in zip(LOGITS.tolist(), one_hot):
        for x, y in zip(row, targets):
            s = 1 / (1 + math.exp(-x))
            terms.append(-(y * math.log(s) + (1 - y) * math.log(1 - s)))
    assert bce_loss(LOGITS, TARGETS).item() == pytest.approx(sum(terms) / 6, rel=1e-6)


def test_balanced_class_weights_inverse_frequency():
    weights = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    raw = np.array([6 / 3, 6 / 1, 6 / 2])
    assert weights[:3].numpy() == pytest.approx(raw / raw.mean())
    assert weights[3] == 0  # absent from training


def test_make_loss_dispatch():
    settings = FinetuningSettings.from_config({**FINETUNING, "loss": "focal", "focal_gamma": 2.0, "focal_alpha": 0.5})
    loss = make_loss(settings, np.array([0, 1, 2]), 3)
    assert loss(LOGITS, TARGETS).item() == pytest.approx(0.5 * focal_loss(LOGITS, TARGETS, 2.0, None).item())
    dice = FinetuningSettings.from_config({**FINETUNING, "loss": "dice"})
    assert make_loss(dice, np.array([0]), 3) is dice_loss
