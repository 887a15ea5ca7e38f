"""One registry maps a method name to its class. Adding a method = one file + one line here.

The facts about a method (its non-private twin, config, DP-SGD or one-shot, federable) live on its
class (``models/base.Method``); this module answers questions about names by reading them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:  # base imports torch; the CLI reads METHODS without it
    from .base import Method

# name -> "module:Class". Imported lazily so `privsynth --help` is fast. A twin (the same model
# without DP) has its own name, pointing at the same class.
METHODS: dict[str, str] = {
    "dpgan": "privsynth.models.gan:GANSynthesizer",
    "gan": "privsynth.models.gan:GANSynthesizer",
    "dpvae": "privsynth.models.vae:VAESynthesizer",
    "vae": "privsynth.models.vae:VAESynthesizer",
    "dpdiffusion": "privsynth.models.diffusion:DiffusionSynthesizer",
    "diffusion": "privsynth.models.diffusion:DiffusionSynthesizer",
    "dpmerf": "privsynth.models.merf:MERFSynthesizer",
    "dpkernel": "privsynth.models.merf:KernelSynthesizer",
    "dpmepf": "privsynth.models.mepf:MEPFSynthesizer",
}


def method_class(name: str) -> type[Method]:
    import importlib

    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {sorted(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def is_private(name: str) -> bool:
    """Method ``name`` trains with DP unless told otherwise (not a twin, not a test double)."""
    if name == "auto":  # chooses among the private methods (models/auto.py)
        return True
    cls = method_class(name)
    return cls.kind != "none" and name != cls.twin


def private_name(name: str) -> str:
    """The private method whose twin is ``name`` (``gan`` -> ``dpgan``), else ``name``."""
    cls = method_class(name)
    return cls.name if name == cls.twin else name


def twin_of(name: str) -> str | None:
    """The non-private twin of private method ``name`` (``dpgan`` -> ``gan``), or None."""
    cls = method_class(name)
    return cls.twin if name == cls.name else None


def federable() -> list[str]:
    """The names that ``privsynth federate`` trains (read from the classes)."""
    return [n for n in METHODS if method_class(n).federable]


def create(
    name: str,
    image_shape: tuple[int, int, int],
    num_classes: int,
    config: dict[str, Any] | None = None,
    private: bool | None = None,
) -> Method:
    """Build method ``name`` for images of ``image_shape`` (C, H, W) and ``num_classes`` classes."""
    cls = method_class(name)
    private = is_private(name) if private is None else private
    return cls(
        image_shape=image_shape, num_classes=num_classes, config=config, private=private, name=name
    )
