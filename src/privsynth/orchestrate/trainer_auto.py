"""``--method auto`` inside `privsynth.train`: a provisional choice before the size release, the
final one from N_hat right after it, and the card's record of both (a resume re-uses it).

The choice itself (models/auto.py) reads public facts only: the image shape and channels, N_hat,
the target epsilon and the time limit. Before N_hat exists the provisional method only builds
the run's request; the final choice rebuilds the method, so the exact count N never reaches it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..models.auto import AUTO, Choice, choose
from ..run import CARD, read_card

__all__ = ["AUTO", "AUTO_NEEDS_EPSILON", "auto_start", "settle_auto"]

AUTO_NEEDS_EPSILON = (
    "--method auto chooses by --epsilon; with --no-dp or --noise-multiplier name the method "
    "(e.g. --method dpmerf)"
)


def auto_start(
    method: str, out: Path, overwrite: bool, dataset, n: int, spec, time_limit, device: str
) -> tuple[Choice | None, int]:
    """(the provisional choice or None for a named method, the size the defaults read). A
    resumed auto run gets the choice and the N_hat its card recorded (never decided again)."""
    if method != AUTO:
        if time_limit is not None:
            raise ConfigError(
                f"--time-limit is read by --method auto only (got --method {method}); drop it, "
                "or lower the method's --epochs / --set steps=..."
            )
        return None, n
    if spec is None or spec.noise_multiplier is not None:
        raise ConfigError(AUTO_NEEDS_EPSILON)
    if time_limit is not None and not time_limit > 0:
        raise ConfigError(f"--time-limit is in minutes and must be > 0, got {time_limit}")
    kept = _recorded(out, overwrite)
    if kept is not None:
        return Choice.from_json(kept[0]), kept[1]
    c, h, w = dataset.image_shape
    return choose((h, w), c, None, spec.epsilon, time_limit, device), n


def _recorded(out: Path, overwrite: bool) -> tuple[dict, int] | None:
    """An unfinished run's recorded choice and N_hat, if ``out`` holds one to resume."""
    if overwrite or not (out / CARD).exists():
        return None
    card = read_card(out)
    choice = card.get("method_choice")
    size = (card.get("privacy") or {}).get("size_release")
    if card.get("status") != "running" or choice is None or size is None:
        return None
    return choice, int(size["dp_count"])


def settle_auto(session, provisional: Choice, spec, time_limit, build):
    """The final choice from N_hat (``spec.size``), written on the card with its reasons, and the
    method built for it: ``build(choice, n_defaults)`` -> (synth, warm-up). A choice the
    card already holds (a resumed run) is kept as it is."""
    card = session.card
    if card.method_choice is not None:
        choice = provisional
    else:
        c, h, w = card.data["image_shape"]
        choice = choose((h, w), c, spec.size, spec.epsilon, time_limit, card.train["device"])
    synth, warm = build(choice, spec.size)
    full_config = synth.config_dict()
    card.method, card.config = synth.name, full_config
    card.request = {**card.request, "method": synth.name, "config": full_config}
    card.request.pop("warmup", None)
    if warm is not None:
        card.request["warmup"] = warm.request()
    card.method_choice = choice.to_json()
    if session.spend is not None:  # later ledger reservations carry the method that runs
        session.spend.meta["method"] = synth.name
    return synth, warm
