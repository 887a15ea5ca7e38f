"""One registry maps a method name to its class. Adding a method = one file + one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:  # base imports torch; the CLI reads METHODS without it
    from .base import Synthesizer

# name -> (module, class name, private by default). Imported lazily so `privsynth --help` is fast.
METHODS: dict[str, tuple[str, str, bool]] = {
    "dpgan": ("privsynth.models.gan", "GANSynthesizer", True),
    "gan": ("privsynth.models.gan", "GANSynthesizer", False),
    "dpvae": ("privsynth.models.vae", "VAESynthesizer", True),
    "vae": ("privsynth.models.vae", "VAESynthesizer", False),
    "dpdiffusion": ("privsynth.models.diffusion", "DiffusionSynthesizer", True),
    "diffusion": ("privsynth.models.diffusion", "DiffusionSynthesizer", False),
    "dpmerf": ("privsynth.models.merf", "MERFSynthesizer", True),
    "dpkernel": ("privsynth.models.merf", "KernelSynthesizer", True),
}


def method_class(name: str) -> type:
    import importlib

    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {sorted(METHODS)}")
    module, cls, _ = METHODS[name]
    return getattr(importlib.import_module(module), cls)


def is_private(name: str) -> bool:
    method_class(name)
    return METHODS[name][2]


def create(name: str, image_shape: tuple[int, int, int], num_classes: int,
           config: dict[str, Any] | None = None, private: bool | None = None) -> Synthesizer:
    """Build method ``name`` for images of ``image_shape`` (C, H, W) and ``num_classes`` classes."""
    cls = method_class(name)
    private = is_private(name) if private is None else private
    return cls(image_shape=image_shape, num_classes=num_classes, config=config, private=private,
               name=name)
