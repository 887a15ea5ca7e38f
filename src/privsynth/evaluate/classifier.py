"""A small fixed LeNet-style CNN: the yardstick for utility (TSTR/TRTR) and feature spaces."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


class LeNet(nn.Module):
    """Two conv blocks + two linear layers; adapts to any 8..64 pixel square input."""

    def __init__(self, channels: int, size: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2) if size >= 16
            else nn.Identity(), nn.Flatten())
        side = size // 4 if size >= 16 else size // 2
        self.embed = nn.Sequential(nn.Linear(2 * width * side * side, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features_of(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features_of(x))


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)


def budget_epochs(n: int, image_passes: int = 12000, lo: int = 2, hi: int = 12) -> int:
    """Epochs for ``n`` training images: about ``image_passes`` images seen, within lo..hi.

    One fixed rule for every training set keeps TSTR, TRTR and augmentation on the same budget."""
    return int(min(hi, max(lo, math.ceil(image_passes / max(1, n)))))


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int = 10,
                     batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> LeNet:
    model, _, _ = train_selected(images, labels, num_classes, epochs, val_fraction=0.0,
                                 batch_size=batch_size, lr=lr, seed=seed)
    return model


def train_selected(images: np.ndarray, labels: np.ndarray, num_classes: int, max_epochs: int = 10,
                   val_fraction: float = 0.1, batch_size: int = 128, lr: float = 2e-3,
                   seed: int = 0,
                   progress: bool = False, desc: str = "classifier") -> tuple[LeNet, int, float]:
    """Train for up to ``max_epochs``; keep the epoch with the best accuracy on a validation split
    carved out of *these* training images (never the test set). Returns (model, epochs, val acc).

    ``val_fraction=0`` trains all ``max_epochs`` on everything (no selection)."""
    torch.manual_seed(seed)
    c, h, _ = images.shape[1:]
    model = LeNet(c, h, num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = _to_tensor(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    g = torch.Generator().manual_seed(seed)
    n_val = int(round(val_fraction * len(x))) if len(x) >= 20 else 0
    perm = torch.randperm(len(x), generator=g)
    val, fit = perm[:n_val], perm[n_val:]
    best = (-1.0, 0, None)
    for epoch in tqdm(range(max_epochs), desc=desc, disable=not progress, leave=False):
        model.train()
        for idx in fit[torch.randperm(len(fit), generator=g)].split(batch_size):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if n_val:
            model.eval()
            with torch.no_grad():
                acc = float((model(x[val]).argmax(1) == y[val]).float().mean())
            if acc > best[0]:
                best = (acc, epoch + 1, copy.deepcopy(model.state_dict()))
    if n_val:
        model.load_state_dict(best[2])
        return model.eval(), best[1], best[0]
    return model.eval(), max_epochs, float("nan")


@torch.no_grad()
def predict(model: LeNet, images: np.ndarray) -> np.ndarray:
    x = _to_tensor(images)
    return torch.cat([model(b) for b in x.split(1024)]).softmax(1).numpy()


@torch.no_grad()
def embed(model: LeNet, images: np.ndarray) -> np.ndarray:
    """The 128-d penultimate features (the FD-LeNet / PRDC / DOMIAS feature space)."""
    model.eval()
    x = _to_tensor(images)
    if len(x) == 0:
        return np.zeros((0, 128), np.float64)
    return torch.cat([model.features_of(b) for b in x.split(1024)]).double().numpy()


def accuracy(model: LeNet, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(model, images).argmax(1) == np.asarray(labels)).mean())
