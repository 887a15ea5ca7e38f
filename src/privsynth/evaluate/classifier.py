"""The evaluation classifiers: a LeNet (the yardstick, and the FD-LeNet feature space) and a
small ResNet (the stronger CNN), with the two ways they are trained.

- `train_fixed`: the utility protocol (TSTR, TRTR, augmentation). A fixed schedule that depends
  only on the number of training images: whole epochs, Adam with a one-cycle learning rate that
  anneals to ~0, and the *last* model is the result. Nothing is selected, so nothing reads the
  holdout, and a collapsed synthetic set cannot flatter itself on its own validation split.
- `train_selected`: keeps the epoch with the best accuracy on a validation split of the training
  images themselves; used where selection is harmless (the feature extractor, trained on
  holdout images only, and the real-vs-synthetic detection classifier).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..errors import ConfigError


class LeNet(nn.Module):
    """Two conv blocks + two linear layers; adapts to any 8..64 pixel square input."""

    def __init__(self, channels: int, size: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2) if size >= 16 else nn.Identity(),
            nn.Flatten(),
        )
        side = size // 4 if size >= 16 else size // 2
        self.embed = nn.Sequential(nn.Linear(2 * width * side * side, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features_of(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features_of(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet-8: a 3x3 stem and three residual stages (width w, 2w, 4w), global average pool.
    Every stage halves the resolution (8x8 images keep theirs in the first), so 28x28 costs about
    2.5 LeNets on one CPU thread and 8x8 about 4 (8x8 LeNets are very cheap).

    Each image is standardised (zero mean, unit variance) before the stem. Batch norm learns the
    statistics of its training images; trained on dim, low-contrast synthetic digits (a DP-VAE's
    pixel std is half the real one) and tested on real ones, the plain ResNet fell to 32% where
    the LeNet reached 74%. Standardised, it does as well or better, and TRTR is unchanged."""

    def __init__(self, channels: int, size: int, num_classes: int, width: int = 32):
        super().__init__()
        strides = (2, 2, 2) if size >= 16 else (1, 2, 2)
        widths = (width, 2 * width, 4 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        cins = (width, *widths[:-1])
        self.stages = nn.Sequential(
            *(BasicBlock(a, b, s) for a, b, s in zip(cins, widths, strides, strict=True))
        )
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = x.mean((1, 2, 3), keepdim=True), x.std((1, 2, 3), keepdim=True)
        x = (x - mean) / (std + 1e-2)
        return self.head(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1))


# name -> (network, its readable name, light shift augmentation while training)
CLASSIFIERS: dict[str, tuple[type[nn.Module], str, bool]] = {
    "lenet": (LeNet, "LeNet", False),
    "resnet": (ResNet, "ResNet-8 (standardised input) + shifts", True),
}


def create_classifier(name: str, channels: int, size: int, num_classes: int) -> nn.Module:
    if name not in CLASSIFIERS:
        raise ConfigError(f"unknown classifier '{name}'; choose from {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[name][0](channels, size, num_classes)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)


def random_shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with black (-1)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    images = torch.arange(n)[:, None, None, None]
    channels = torch.arange(x.shape[1])[None, :, None, None]
    return padded[images, channels, rows, cols]


def fixed_epochs(n: int, image_passes: int, hi: int = 20) -> int:
    """Whole epochs for ``n`` training images: about ``image_passes`` images seen, but always at
    least one full pass (every image of a large synthetic set is used) and at most ``hi``."""
    return int(min(hi, max(1, math.ceil(image_passes / max(1, n)))))


def fixed_batch_size(n: int, largest: int = 128) -> int:
    """``largest``, or smaller for small sets so that an epoch still has ~16 steps (batch norm
    and Adam need a few dozen steps; a ResNet given 300 images in 128s learns nothing)."""
    return int(min(largest, max(32, math.ceil(n / 16))))


def train_fixed(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    classifier: str = "lenet",
    epochs: int = 3,
    batch_size: int | None = None,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
    desc: str = "classifier",
) -> nn.Module:
    """Train ``classifier`` for exactly ``epochs`` epochs with a one-cycle learning rate (peak
    ``lr``, annealed to ~0) and return the last model. No validation, no early stopping.
    ``batch_size`` defaults to `fixed_batch_size` of the set's size."""
    torch.manual_seed(seed)
    batch_size = batch_size or fixed_batch_size(len(images))
    c, h, _ = images.shape[1:]
    model = create_classifier(classifier, c, h, num_classes)
    augment = CLASSIFIERS[classifier][2]
    x, y = _to_tensor(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    steps_per_epoch = math.ceil(len(x) / batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    g = torch.Generator().manual_seed(seed)
    shift = max(1, h // 14)
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            xb = random_shift(x[idx], shift, g) if augment else x[idx]
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def budget_epochs(n: int, image_passes: int = 12000, lo: int = 2, hi: int = 12) -> int:
    """Epoch ceiling of `train_selected` for ``n`` images: about ``image_passes`` images seen."""
    return int(min(hi, max(lo, math.ceil(image_passes / max(1, n)))))


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> LeNet:
    """A LeNet trained for ``epochs`` at a constant learning rate (the sweep's feature space)."""
    model, _, _ = train_selected(
        images,
        labels,
        num_classes,
        epochs,
        val_fraction=0.0,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
    )
    return model


def train_selected(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    max_epochs: int = 10,
    val_fraction: float = 0.1,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
    desc: str = "classifier",
) -> tuple[LeNet, int, float]:
    """Train a LeNet for up to ``max_epochs``; keep the epoch with the best accuracy on a
    validation split carved out of *these* training images (never the test set). Returns
    (model, epochs, val acc). ``val_fraction=0`` trains all ``max_epochs`` (no selection)."""
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
def predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    model.eval()
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


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(model, images).argmax(1) == np.asarray(labels)).mean())
