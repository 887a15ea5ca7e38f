"""`RunRequest`: everything one `privsynth.train` run is asked to do: a method and four parts.

The CLI, `privsynth.train(data, method, out, **kwargs)` and the multi-process launcher all build
one, and `trainer.train(request)` is the one entry: the values travel as the user gave them (an
epsilon stays the float it was parsed as; None means "not given", never a marker string).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .privacy.size_release import SHARE

if TYPE_CHECKING:
    from .data import DataSource, ImageDataset


@dataclass(frozen=True)
class DataRequest:
    """``source``: 'digits', a path, a `DataSource` (a path plus its public format inputs) or an
    in-memory `ImageDataset`; ``holdout``: a fraction, a count, or the path of an official test
    split in the same format; ``public_data``: images the user declares public (warm-up only)."""

    source: str | Path | DataSource | ImageDataset = "digits"
    holdout: float | str = 0.2
    split_seed: int = 0
    image_size: int | None = None
    public_data: str | Path | ImageDataset | None = None


@dataclass(frozen=True)
class PrivacyRequest:
    """``epsilon``: the total target, class-proportion and size releases included (default 10
    for a private method); ``delta`` defaults to 1/(10 N_hat), N_hat the released training-set
    size, and ``delta >= 1/N`` needs ``force``. ``noise_multiplier`` fixes sigma instead of
    calibrating it. ``no_dp`` (or a non-private method) trains without privacy, and then every
    privacy option here must stay at its default. ``ledger``: path or postgresql:// URL (default
    ``$PRIVSYNTH_LEDGER`` or the per-user ledger); ``budget`` only checks, never sets.
    ``size_share``/``size_sigma``: the size release (privacy/size_release.py)."""

    epsilon: float | None = None
    delta: float | None = None
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "bk"
    no_dp: bool = False
    ledger: str | Path | None = None
    budget: float | None = None
    force: bool = False
    class_proportions: str = "uniform"
    counts_epsilon: float = 0.1
    size_share: float = SHARE
    size_sigma: float | None = None


@dataclass(frozen=True)
class TrainingRequest:
    """``config``: the method's options over its recommended defaults (models/defaults.py).
    ``warmup="central"`` pretrains on a DP release of per-class central images first,
    ``"merf"`` on the draws of a generator trained against a DP-MERF release (either release's
    epsilon composed with DP-SGD's in one accountant, within ``epsilon``); None takes the
    method's recommended warm-up (`models.defaults.recommended_warmup`) unless ``public_data``
    is given. ``warmup_config``: `WarmupConfig` keys (docs/warmup.md). Dicts are only read."""

    config: dict[str, Any] | None = None
    seed: int = 0
    time_limit: float | None = None  # minutes, read by method "auto" only (models/auto.py)
    device: str = "cpu"
    progress: bool = True
    checkpoint_every: int = 500
    warmup: str | None = None
    warmup_config: dict[str, Any] | None = None


@dataclass(frozen=True)
class OutputRequest:
    """The run folder ``out`` (resumed if it holds an unfinished run of the same request).
    ``samples``: write the sample grid samples.png; ``quick_eval``: write quick_eval.json
    (stats, collapse check, TSTR/TRTR with ``quick_eval_classifiers``); README.md cites both."""

    out: Path = Path("runs/run")
    overwrite: bool = False
    samples: bool = True
    quick_eval: bool = False
    quick_eval_classifiers: tuple[str, ...] = ("lenet",)


@dataclass(frozen=True)
class RunRequest:
    """``method`` (a `models.registry.METHODS` name) and its four parts; `build` takes
    `privsynth.train`'s flat keywords."""

    method: str = "auto"
    data: DataRequest = field(default_factory=DataRequest)
    privacy: PrivacyRequest = field(default_factory=PrivacyRequest)
    training: TrainingRequest = field(default_factory=TrainingRequest)
    output: OutputRequest = field(default_factory=OutputRequest)

    @classmethod
    def build(cls, data: Any = "digits", method: str = "auto", out: Any = "runs/run", **kwargs):
        """From `privsynth.train`'s flat keywords (each a field of one part); an unknown one
        is refused naming the valid ones."""
        return cls(method=method).replace(source=data, out=out, **kwargs)

    def replace(self, **changes: Any) -> RunRequest:
        """A copy with flat keyword changes routed to their part (``data`` is ``source``)."""
        if "data" in changes:
            changes["source"] = changes.pop("data")
        unknown = sorted(set(changes) - set(_PART_OF) - {"method"})
        if unknown:
            valid = ", ".join(sorted({"data", "method", *_PART_OF} - {"source"}))
            raise ConfigError(f"unknown train option(s) {', '.join(unknown)}; valid: {valid}")
        if "out" in changes:
            changes["out"] = Path(changes["out"])
        parts = {"method": changes.pop("method", self.method)}
        for part in ("data", "privacy", "training", "output"):
            mine = {k: v for k, v in changes.items() if _PART_OF[k] == part}
            parts[part] = dataclasses.replace(getattr(self, part), **mine)
        return RunRequest(**parts)

    @property
    def private(self) -> bool:
        from .models.registry import is_private

        return is_private(self.method) and not self.privacy.no_dp

    def check(self) -> None:
        """What fails without the data: values that would otherwise fail (or be ignored) only
        after the spend was reserved, and privacy options on a run without DP."""
        every = self.training.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int):
            raise ConfigError(f"--checkpoint-every must be a whole number, got {every!r}")
        if every < 1:
            raise ConfigError(f"--checkpoint-every must be >= 1 step, got {every}; e.g. 500")
        seeds = (("--seed", self.training.seed), ("--split-seed", self.data.split_seed))
        for flag, value in seeds:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise ConfigError(f"{flag} must be a whole number in 0..2**63-1, got {value!r}")
        if self.output.quick_eval:  # refused before the spend, not after training
            from .evaluate.classifier import check_classifier

            for name in self.output.quick_eval_classifiers:
                check_classifier(name)
        if self.private:
            return
        # A non-private run (a twin or --no-dp) refuses privacy options: they would promise nothing
        from .models.registry import private_name
        from .orchestrate.trainer_auto import AUTO, AUTO_NEEDS_EPSILON
        from .privacy.checks import refuse_flags_without_dp

        if self.method == AUTO:
            raise ConfigError(AUTO_NEEDS_EPSILON)
        p, twin = self.privacy, private_name(self.method)
        given = {
            "--epsilon": p.epsilon is not None,
            "--delta": p.delta is not None,
            "--noise-multiplier": p.noise_multiplier is not None,
            "--budget": p.budget is not None,
            "--class-proportions": p.class_proportions != "uniform",
        }
        refuse_flags_without_dp(
            self.method, p.no_dp, given, twin=twin if twin != self.method else None
        )


_PART_OF = {
    f.name: part
    for part, cls in (
        ("data", DataRequest),
        ("privacy", PrivacyRequest),
        ("training", TrainingRequest),
        ("output", OutputRequest),
    )
    for f in dataclasses.fields(cls)
}
