"""DP-MEPF (Harder, Jalali Asadabadi, Sutherland, Park, TMLR 2023): DP-MERF's one release and
free generator training, with the random features replaced by the activations of a network
trained on **public** data (``--features PATH``, made by ``privsynth features``).

What is released is the same statistic as DP-MERF's: ``S = sum_i f(x_i) e_{y_i}^T`` with
``||f(x)|| <= C``. Here ``f(x)`` is the feature network's layers (each ReLU output, conv maps
averaged over positions), each normalised to unit length, concatenated with weight
``sqrt((1 - w_0) / L)``, plus DP-MERF's constant feature ``sqrt(w_0)`` that carries the class
counts. The network's weights are public input: they are fixed before the private data is read
and never trained on it, so they cost no epsilon, and they travel with the run's released
weights (sampling reads them; the path is not needed after training).

What the guarantee does not cover: the data the feature network was trained on. The user
declares it public; if it is not, it is not protected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path
from ..data import ImageDataset
from ..errors import ConfigError
from .merf import KernelFeatures, MERFConfig, MERFSynthesizer

FORMAT = "privsynth-features/1"


@dataclass
class MEPFConfig(MERFConfig):
    """``dpmepf``: DP-MERF's release and generator, features from a public network."""

    features: str = ""  # the feature network (safetensors from `privsynth features`): public
    feature_net: str = ""  # its architecture "classifier:classes", read from the file

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.features:  # absolute: a resumed run or an owner may start elsewhere
            self.features = str(Path(self.features).expanduser().resolve())


def save_feature_network(net: nn.Module, classifier: str, image_shape, num_classes: int, path):
    """Write ``net``'s weights and what rebuilds it (safetensors metadata) atomically."""
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "classifier": classifier,
        "image_shape": ",".join(str(int(v)) for v in image_shape),
        "num_classes": str(int(num_classes)),
    }
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def train_feature_network(
    public: ImageDataset,
    path,
    classifier: str = "lenet",
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = False,
) -> Path:
    """Train the evaluation ``classifier`` on ``public`` images (its fixed schedule; ``epochs``
    overrides the length) and save it as a feature network for ``dpmepf``. Only ever give it data
    that may be published."""
    from ..evaluate.classifier import fixed_schedule, train_fixed

    images, labels = public.images, public.labels
    schedule = fixed_schedule(len(images), images.shape[1:], epochs=epochs, classifier=classifier)
    net = train_fixed(
        images, labels, public.num_classes, classifier, schedule, seed, progress, "features"
    )
    save_feature_network(net, classifier, public.image_shape, public.num_classes, path)
    return Path(path)


def read_metadata(path: str) -> dict:
    """The feature file's metadata; a one-line ConfigError if it is not one."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001  (safetensors raises its own types)
        raise ConfigError(
            f"--features {path}: not a readable feature network ({exc}); make one with "
            "'privsynth features --data PUBLIC --out FILE'"
        ) from None
    if meta.get("format") != FORMAT:
        raise ConfigError(
            f"--features {path}: not a privsynth feature network; make one with "
            "'privsynth features --data PUBLIC --out FILE'"
        )
    return meta


class PerceptualFeatures(nn.Module):
    """``f(x)``: the frozen network's normalised layer activations, ``||f(x)|| <= norm``."""

    def __init__(self, net: nn.Module, image_shape, count_weight: float):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.count_weight = count_weight
        self._seen: list[torch.Tensor] = []  # the hooked layers' outputs of the last forward
        for m in net.modules():
            if isinstance(m, nn.ReLU) or _is_block(m):
                m.register_forward_hook(lambda _m, _i, out: self._seen.append(out))
        with torch.no_grad():
            self.dim = sum(p.shape[1] for p in self._parts(torch.zeros(1, *image_shape))) + 1

    def train(self, mode: bool = True) -> "PerceptualFeatures":
        super().train(mode)
        self.net.eval()  # batch norm keeps the public statistics it was trained with
        return self

    def _parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._seen = []  # the hooks append to whichever list is here when they run
        self.net(x)
        return [a.mean((2, 3)) if a.dim() == 4 else a.flatten(1) for a in self._seen]

    def forward(self, x: torch.Tensor, norm: float = 1.0) -> torch.Tensor:
        parts = self._parts(x)
        scale = norm * math.sqrt((1 - self.count_weight) / len(parts))
        # each layer at unit length (at most: an all-zero layer stays zero), so ||f|| <= norm
        unit = [p / p.norm(dim=1, keepdim=True).clamp_min(1e-12) * scale for p in parts]
        unit.append(x.new_full((len(x), 1), norm * math.sqrt(self.count_weight)))
        return torch.cat(unit, 1)

    class_means = KernelFeatures.class_means
    counts = KernelFeatures.counts


def _is_block(m: nn.Module) -> bool:
    from ..evaluate.classifier import BasicBlock

    return isinstance(m, BasicBlock)  # a ResNet block ends in F.relu (no module to hook)


class MEPFSynthesizer(MERFSynthesizer):
    """``dpmepf``: one Gaussian release of per-class mean embeddings of public-network features
    (see the module doc) + a generator trained to match them for free."""

    name, config_class = "dpmepf", MEPFConfig
    not_protected = (
        " Nor the images the --features network was trained on (declared public by the user;"
        " its weights are released with the run)."
    )

    def make_features(self, cfg: MEPFConfig) -> PerceptualFeatures:
        from safetensors.torch import load_file

        from ..evaluate.classifier import create_classifier

        path = cfg.features
        self._net_from_file = bool(path) and Path(path).is_file()
        if self._net_from_file:
            meta = read_metadata(path)
            shape = tuple(int(v) for v in meta["image_shape"].split(","))
            if shape != self.image_shape:
                raise ConfigError(
                    f"--features {path} was trained on {shape} images, these are "
                    f"{self.image_shape}; make it from public images of the same shape "
                    "(privsynth features --image-size N --channels C)"
                )
            cfg.feature_net = f"{meta['classifier']}:{meta['num_classes']}"
        elif not cfg.feature_net:  # a saved run records it; a new one needs the file
            missing = f" ({path} is missing)" if path else ""
            raise ConfigError(
                f"dpmepf needs --features PATH{missing}: a feature network trained on public "
                "data; make one with 'privsynth features --data PUBLIC --out FILE'"
            )
        classifier, classes = cfg.feature_net.split(":")
        c, h, _ = self.image_shape
        net = create_classifier(classifier, c, h, int(classes))
        if self._net_from_file:
            net.load_state_dict(load_file(path))
        return PerceptualFeatures(net, self.image_shape, cfg.count_weight)

    def statistic(self, data: ImageDataset, sensitivity: float) -> torch.Tensor:
        if not self._net_from_file:  # (weights only come from a run's files after this)
            raise ConfigError(f"dpmepf: --features {self.config.features} is missing")
        return super().statistic(data, sensitivity)

    def released_modules(self) -> dict[str, nn.Module]:
        """The generator, the released embedding and the public feature network (sampling's
        witness reads it; it was trained on public data only)."""
        return {**super().released_modules(), "feature_net": self.features.net}
