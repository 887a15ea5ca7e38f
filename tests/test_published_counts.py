"""Add/remove-one neighbours differ in size, so no published artefact (exported card.json, the
model card README.md, `privsynth info`) carries an exact private count; a count appears only as
the noisy value of a DP release (docs/privacy.md, "Neighbouring relation and published counts")."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import privsynth
from privsynth.cli import main
from privsynth.orchestrate import trainer_plan
from privsynth.privacy.checks import PrivacyWarning, check_delta

N_TOTAL, N_TRAIN = 97, 78  # a distinctive size: holdout 0.2 of 97 leaves 78 to train on
COUNT_KEYS = {"n_total", "n_train", "n_holdout", "n_private", "num_examples"}


def _walk(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, x


def _exact_counts(card: dict) -> list[str]:
    """Fields named like a count, or holding the exact train/total count (the DP counts aside:
    a noisy count may land on the exact value by chance)."""
    found = []
    for path, value in _walk(card):
        if path.startswith(".export."):  # the export's list of what it removed, by name
            continue
        if set(path.replace("[", ".").split(".")) & COUNT_KEYS:
            found.append(path)
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value in (N_TRAIN, N_TOTAL)
            and "dp_count" not in path
        ):
            found.append(f"{path}={value}")
    return found


def _mentions(text: str, n: int) -> bool:
    """``n`` as a number of its own in ``text`` (not inside a hex id, a decimal or 1,234)."""
    return re.search(rf"(?<![\w.,]){n}(?![\w]|[.,]\d)", text) is not None


@pytest.fixture
def counted_run(tmp_path, make_tiny, fast_gan, monkeypatch):
    """A finished dpgan run on 97 images with a Laplace class-proportion release, the noisy
    counts it drew recorded."""
    drawn = []
    real = getattr(trainer_plan, "release_counts", None)  # absent before DP counts were published

    def spy(*args, **kw):
        noisy, release = real(*args, **kw)
        drawn.append(noisy)
        return noisy, release

    monkeypatch.setattr(trainer_plan, "release_counts", spy, raising=False)
    with pytest.warns(PrivacyWarning):  # few images: weak
        run = privsynth.train(
            make_tiny(N_TOTAL),
            "dpgan",
            tmp_path / "run",
            config=fast_gan,
            accountant="rdp",
            class_proportions="laplace",
            progress=False,
        )
    return run, drawn


def test_exported_card_model_card_and_info_have_no_exact_count(tmp_path, counted_run, capsys):
    run, drawn = counted_run
    assert len(json.loads((run.path / "split.json").read_text())["train"]) == N_TRAIN
    pub = tmp_path / "pub"
    assert main(["export", str(run.path), str(pub)]) == 0
    card = json.loads((pub / "card.json").read_text())
    assert _exact_counts(card) == []
    assert main(["info", str(run.path)]) == 0
    info = capsys.readouterr().out
    texts = ((pub / "README.md").read_text(), (run.path / "README.md").read_text(), info)
    for text in texts:
        assert not _mentions(text, N_TRAIN) and not _mentions(text, N_TOTAL), text
    (noisy,) = drawn  # the one class-count release
    dp_count = float(np.sum(noisy))
    for text in texts:
        # the one count published is the DP release's noisy value, labelled as such
        assert f"{dp_count:,.1f} (DP count from the class proportions release)" in text
    assert _exact_counts(run.card) == []  # the run folder's card too


def test_card_publishes_the_dp_count_and_the_neighbouring_relation(counted_run):
    run, drawn = counted_run
    nb = run.card["privacy"]["neighbouring"]
    dp_count = float(np.sum(drawn[0]))
    assert nb["relation"].startswith("add/remove one record")
    releases = [c["release"] for c in nb["published_counts"]]
    assert releases == ["size_release", "class_proportions"]
    assert nb["published_counts"][1]["dp_count"] == dp_count
    assert run.card["privacy"]["class_proportions"]["dp_count"] == dp_count
    # q and the default delta are computed from the size release's N_hat, not from the exact N
    n_hat = run.card["privacy"]["size_release"]["dp_count"]
    assert nb["published_counts"][0]["dp_count"] == n_hat
    assert run.delta == pytest.approx(1 / (10 * n_hat))
    assert "limitation" not in nb and "disclosed_by_parameters" not in nb


def test_dpmerf_card_publishes_its_count_feature_not_the_exact_count(tmp_path, make_tiny):
    run = privsynth.train(
        make_tiny(N_TOTAL),
        "dpmerf",
        tmp_path / "m",
        noise_multiplier=5.0,
        delta=1e-5,
        accountant="rdp",
        config={"steps": 3, "n_features": 20},
        progress=False,
    )
    nb = run.card["privacy"]["neighbouring"]
    size, count = nb["published_counts"]
    assert size["release"] == "size_release"
    assert count["release"] == "dpmerf" and count["dp_count"] != N_TRAIN  # noisy (sigma 5)
    assert "limitation" not in nb
    assert _exact_counts(run.card) == []
    assert "batch_size" not in run.card["privacy"]["dp_sgd_plan"]  # a release's "batch" is N


def test_export_strips_exact_counts_of_an_older_card(tmp_path, trained_run):
    old = tmp_path / "old"
    shutil.copytree(trained_run["out"], old)
    card = json.loads((old / "card.json").read_text())
    card["data"].update(n_total=N_TOTAL, n_train=N_TRAIN, n_holdout=N_TOTAL - N_TRAIN)
    card["privacy"]["dp_sgd"].update(n_private=N_TRAIN, expected_batch_size=31.2)
    (old / "card.json").write_text(json.dumps(card))
    assert main(["export", str(old), str(tmp_path / "pub")]) == 0
    published = json.loads((tmp_path / "pub" / "card.json").read_text())
    assert _exact_counts(published) == []
    assert "expected_batch_size" not in published["privacy"]["dp_sgd"]


def test_card_warning_names_no_exact_count():
    with pytest.warns(PrivacyWarning, match=f"only {N_TRAIN} private"):
        notes = check_delta(1 / (10 * N_TRAIN), N_TRAIN, given=False, force=False)
    assert notes and not any(_mentions(n, N_TRAIN) for n in notes)


def test_federated_card_has_no_exact_per_owner_count():
    from privsynth.federated.card import privacy_block
    from privsynth.federated.oneshot_card import guarantee_block
    from privsynth.federated.runconfig import DEFAULTS

    cfg = {**DEFAULTS, "privacy": json.dumps({"epsilon": 10.0, "accountant": "rdp"})}
    report = {
        "partition": 0,
        "epsilon": 1.0,
        "delta": 1e-3,
        "num_examples": 437,
        "noise_multiplier": 1.0,
        "sample_rate": 0.1,
        "history": json.dumps({"history": [[1.0, 0.1, 4]]}),
    }
    block = privacy_block(cfg, [report, {**report, "partition": 1, "num_examples": 389}])
    assert not [p for p, v in _walk(block) if "num_examples" in p or v in (437, 389)]
    assert "image count" in block["not_protected"]  # it says what discloses one anyway
    oneshot_cfg = {**cfg, "privacy": json.dumps({"epsilon": 10.0, "delta": 1e-5})}
    oneshot_cfg.update({"total-images": 826, "max-images": 437})
    info = {"aggregation": "plain", "survivors": 2, "failures": 0, "owner_noise_std": 1.0}
    one = guarantee_block(oneshot_cfg, info)
    assert "n_private" not in one["dp_sgd"] and not [p for p, v in _walk(one) if v == 826]


def test_central_warmup_card_publishes_the_release_count(tmp_path, make_tiny, monkeypatch):
    from privsynth.models import warmup as warmup_mod

    drawn = []
    real = warmup_mod.release_central

    def spy(*args, **kw):
        drawn.append(real(*args, **kw))
        return drawn[-1]

    monkeypatch.setattr(warmup_mod, "release_central", spy)
    run = privsynth.train(
        make_tiny(N_TOTAL),
        "dpvae",
        tmp_path / "w",
        epsilon=4.0,
        delta=1e-5,
        accountant="rdp",
        config={"epochs": 1, "batch_size": 32, "width": 8, "z_dim": 4},
        progress=False,
        warmup="central",
        warmup_config={"epochs": 1, "images": 32},
    )
    (release,) = drawn
    nb = run.card["privacy"]["neighbouring"]
    size, count = nb["published_counts"]
    assert size["release"] == "size_release"
    assert count["release"] == "warmup.central"
    expected = float(np.sum(release.counts)) / (release.queries * release.sample_rate)
    assert count["dp_count"] == pytest.approx(expected)
    assert _exact_counts(run.card) == []
    assert "limitation" not in nb  # DP-SGD's q is computed from N_hat
