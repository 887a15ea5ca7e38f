"""A small fixed LeNet-style CNN: the yardstick for utility (TSTR/TRTR) and feature spaces."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


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


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int = 10,
                     batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> LeNet:
    torch.manual_seed(seed)
    c, h, _ = images.shape[1:]
    model = LeNet(c, h, num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = _to_tensor(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: LeNet, images: np.ndarray) -> np.ndarray:
    x = _to_tensor(images)
    return torch.cat([model(b) for b in x.split(1024)]).softmax(1).numpy()


def accuracy(model: LeNet, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(model, images).argmax(1) == np.asarray(labels)).mean())
