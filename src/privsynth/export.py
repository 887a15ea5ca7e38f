"""`privsynth export RUN DIR`: the part of a run folder that is safe to publish.

A run folder is a working folder: split.json names the training rows, train_state.pt holds
optimiser state, the card records local paths and the un-noised training losses. The export keeps
only what the DP guarantee covers or what is public anyway:

    weights.safetensors   the released model (covered by the guarantee)
    card.json             the privacy card, without local paths and un-noised losses
    README.md             the model card (Hugging Face format), from that card
    samples.png           the sample grid (drawn from the released weights: post-processing)

Evaluation figures (quick_eval.json) are not covered by the guarantee: TRTR comes from a classifier
trained without noise on the private training split, and every figure is measured on the real
holdout. They are published only when asked for (``include_evaluation``), under a heading that says
so.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .atomic import atomic_dir, write_bytes, write_json
from .errors import CheckpointError, ConfigError
from .nodp import is_private
from .preflight import check_not_an_input, check_output_folder
from .run import CARD, GRID, MODEL_CARD, WEIGHTS, quick_eval, read_card

PUBLISHED = (WEIGHTS, CARD, MODEL_CARD, GRID)
# Card fields that are private or local: (path of keys, why) — the why is written into the card.
DROPPED = [
    (("request",), "the command's inputs, including local paths"),
    (("ledger",), "the local ledger's location"),
    (("progress",), "training progress"),
    (("data", "source"), "the local path of the private data"),
    (("data", "check"), "a keyed hash of the private data (for resuming and evaluating)"),
    (("data", "dataset_key"), "the local ledger's keyed dataset key"),
    (("data", "owner_data"), "the owners' local data paths"),
    (("train", "metrics"), "training losses, computed on private batches without noise"),
    (("privacy", "warmup", "public_data", "source"), "the local path of the public data"),
    (("config", "features"), "the local path of the public feature network (dpmepf)"),
    (("train", "holdout"), "the holdout setting (a local path when a test split was given)"),
    (("federated", "per_round"), "per-round owner reports (not covered by the guarantee)"),
    (("privacy", "dataset_spend", "ledger"), "the local ledger's location"),
    (("privacy", "ledger", "location"), "the local ledger's location"),
    (("privacy", "ledger", "dataset_key"), "the local ledger's keyed dataset key"),
    # Exact counts (cards written before they left the card): add/remove-one neighbours differ
    # in size, so an exact count tells them apart (docs/privacy.md).
    (("data", "n_total"), "an exact count of private images"),
    (("data", "n_train"), "an exact count of private images"),
    (("data", "n_holdout"), "an exact count of private images"),
    (("privacy", "dp_sgd", "n_private"), "an exact count of private images"),
    (("privacy", "dp_sgd", "expected_batch_size"), "q x the exact count of private images"),
    (("privacy", "dp_sgd_plan", "n_private"), "an exact count of private images"),
]


def public_card(card: dict) -> tuple[dict, list[str]]:
    """A deep copy of ``card`` without the DROPPED fields, and the dotted names removed."""
    import copy

    card = copy.deepcopy(card)
    removed = []
    for keys, _ in DROPPED:
        parent = card
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and keys[-1] in parent:
            del parent[keys[-1]]
            removed.append(".".join(keys))
    return card, removed


def export(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    license_id: str | None = None,
    overwrite: bool = False,
    non_private: bool = False,
    include_evaluation: bool = False,
) -> Path:
    """Write the publishable part of the finished run ``run`` into the folder ``out``.

    ``license_id``: a Hugging Face license identifier for the model card (default: 'other',
    unspecified — the data owner decides). A run without differential privacy is refused unless
    ``non_private`` (its weights can reveal training images). ``include_evaluation``: also put
    the run's quick evaluation (quick_eval.json: computed on real data without DP, so not covered
    by the guarantee) into README.md, labelled as such; by default no evaluation figure is
    published. Built in a temporary sibling and renamed: ``out`` is never half-written; an
    existing non-empty ``out`` needs ``overwrite``."""
    from .report.card_text import model_card

    run, out = Path(run), check_output_folder(out, "DIR")
    check_license(license_id)
    card = read_card(run)
    if card.get("status") != "complete" or not (run / WEIGHTS).exists():
        raise CheckpointError(
            f"run '{run}' is not finished (status {card.get('status')!r}); "
            "finish it (rerun the same `privsynth train`) before exporting"
        )
    if not is_private(card) and not non_private:
        raise ConfigError(
            f"run '{run}' was trained without differential privacy: its weights "
            "can reveal training images. Export a DP run, or pass --non-private "
            "if the training data is public"
        )
    check_not_an_input(out, {"RUN": run}, "DIR")
    if run.resolve() in out.resolve().parents:
        raise ConfigError(f"DIR '{out}' lies inside the run folder; choose a folder outside it")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"'{out}' exists and is not empty; pass --overwrite to replace it or choose another DIR"
        )
    check_weights(run / WEIGHTS)
    published, removed = public_card(card)
    if license_id:
        published["license"] = license_id
    published["export"] = {
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "removed_fields": removed,
        "why": {".".join(k): why for k, why in DROPPED if ".".join(k) in removed},
        "not_published": [
            "split.json (names the training rows)",
            "train_state.pt (optimiser state)",
            "quick_eval.json (evaluation on real data without DP"
            + (
                "; its figures are in README.md, marked as not covered by the guarantee)"
                if include_evaluation
                else "; not published: export with --include-evaluation to add it)"
            ),
        ],
    }
    evaluation = quick_eval(run) if include_evaluation else None
    with atomic_dir(out) as tmp:
        shutil.copy2(run / WEIGHTS, tmp / WEIGHTS)
        if (run / GRID).exists():
            shutil.copy2(run / GRID, tmp / GRID)
        write_json(tmp / CARD, published)
        files = [f for f in PUBLISHED if (tmp / f).exists() or f == MODEL_CARD]
        write_bytes(
            tmp / MODEL_CARD,
            model_card(published, evaluation, files, license_id=license_id, exported=True).encode(),
        )
    return out


# The license identifiers the Hugging Face Hub accepts in a model card's `license:` field (its
# "Licenses" documentation page): anything else (a typo, or text with a newline that would add
# YAML keys to the card's header) is refused.
HF_LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m
    bigscience-bloom-rail-1.0 bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause
    bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0
    cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
    cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0
    etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc
    h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl
    openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
    deepfloyd-if-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma unknown
    other""".split()
)


def check_license(license_id: str | None) -> None:
    if license_id is not None and license_id not in HF_LICENSES:
        raise ConfigError(
            f"--license {license_id!r} is not a license identifier the Hugging Face Hub "
            "accepts; pass one such as apache-2.0, mit, cc-by-4.0 or other"
        )


def check_weights(path: Path) -> None:
    """Publish only weights that load: a damaged file would go out under the run's card."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                f.get_tensor(key)
    except Exception as e:  # safetensors raises its own error types on a damaged file
        raise CheckpointError(
            f"{path} is not valid safetensors ({type(e).__name__}); restore it or retrain "
            "before exporting"
        ) from None
