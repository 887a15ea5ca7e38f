"""Standard FID, only when the user supplies a local Inception-v3 weights file.

Nothing downloads. The file is the pytorch-fid one (``pt_inception-2015-12-05-6726825d.pth``, a
plain state dict, loaded with ``torch.load(weights_only=True)``), used through the ``pytorch-fid``
package's FID-Inception blocks (which need ``torchvision``). Without those packages this raises
an error naming the fix; the FD-LeNet numbers do not depend on any of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def load_inception(weights: str | os.PathLike[str]):
    """pytorch-fid's pool3 InceptionV3 with the weights from ``weights`` (no download)."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"Inception weights '{path}' not found; pass the local pytorch-fid file "
            "pt_inception-2015-12-05-6726825d.pth (nothing is downloaded)"
        )
    try:
        import torch
        from pytorch_fid import inception as pfi
    except ImportError:
        raise ConfigError(
            "standard FID needs the pytorch-fid package (and torchvision matching "
            "torch 2.13); install them, or drop --inception-weights and use "
            "FD-LeNet"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unreadable file gets the same fix
        raise ConfigError(
            f"'{path}' is not a PyTorch state dict ({type(e).__name__}); pass the "
            "pytorch-fid Inception weights file"
        ) from None

    def local_fid_inception_v3():
        net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = pfi.FIDInceptionE_1(1280)
        net.Mixed_7c = pfi.FIDInceptionE_2(2048)
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ConfigError(
                f"'{path}' does not match the FID Inception-v3 layout ({e}); pass "
                "the pytorch-fid weights file"
            ) from None
        return net

    original = pfi.fid_inception_v3
    pfi.fid_inception_v3 = local_fid_inception_v3  # the only place pytorch-fid would download
    try:
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], use_fid_inception=True)
    finally:
        pfi.fid_inception_v3 = original
    return model.eval()


def inception_features(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch].astype(np.float32) / 255.0)
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            out.append(model(x)[0].squeeze(-1).squeeze(-1).double().numpy())
    return np.concatenate(out)


def fid(weights: str | os.PathLike[str], real: np.ndarray, synthetic: np.ndarray) -> float:
    """Standard FID (Inception pool3, 2048-d) between two uint8 image sets."""
    from .fidelity import frechet

    model = load_inception(weights)
    return frechet(inception_features(model, real), inception_features(model, synthetic))
