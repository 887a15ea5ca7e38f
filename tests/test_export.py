"""The shareable run folder: README.md model card (Hugging Face format) beside card.json, and
`privsynth export RUN DIR` with only what is safe to publish."""

from __future__ import annotations

import json

import numpy as np

from privsynth.cli import main
from privsynth.privacy import Ledger
from privsynth.run import Run


def front_matter(text: str) -> dict:
    """The YAML block of a model card, read without a YAML library (flat keys and lists)."""
    assert text.startswith("---\n")
    block = text[4 : text.index("\n---\n")]
    out: dict = {}
    key = None
    for line in block.splitlines():
        if line.startswith("- "):
            out[key].append(line[2:].strip().strip('"'))
        else:
            key, _, value = line.partition(":")
            out[key] = value.strip() or []
    return out


def test_run_folder_has_a_model_card(trained_run):
    out = trained_run["out"]
    text = (out / "README.md").read_text()
    card = json.loads((out / "card.json").read_text())
    meta = front_matter(text)
    assert meta["license"] == "other" and meta["library_name"] == "privsynth"
    assert {"differential-privacy", "dpgan", "synthetic-data"} <= set(meta["tags"])
    assert meta["datasets"] == ["tiny"]
    for section in (
        "## Method",
        "## Privacy guarantee",
        "## What is not protected",
        "## Evaluation",
        "## How to sample",
    ):
        assert section in text
    assert card["run_id"] in text and f"ε = {card['privacy']['epsilon']:.3g}" in text
    assert card["privacy"]["plain_language"] in text
    assert "Hyper-parameter tuning" in text  # the card's own "not protected" text
    assert "privsynth sample . -n 1000" in text
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic: no temp files


def test_card_summary_sentence_and_dataset_spend(trained_run):
    card = Run.load(trained_run["out"]).card
    pv = card["privacy"]
    sentence = pv["plain_language"]
    assert sentence.count(". ") == 0 and sentence.endswith(".")  # one sentence
    assert "each training record" in sentence  # never the exact count
    assert "a coin flip is 50%" in sentence and f"ε = {pv['epsilon']:.3g}" in sentence
    (dataset,) = [
        d
        for d in Ledger(trained_run["ledger"]).datasets()
        if d["fingerprint"] == card["data"]["dataset_key"]
    ]
    booked = dataset["runs"]
    assert pv["dataset_spend"]["epsilon"] == sum(r["epsilon"] for r in booked.values())
    assert "basic composition" in pv["dataset_spend"]["composition"]


def test_export_publishes_only_what_is_safe(tmp_path, trained_run, capsys):
    pub = tmp_path / "hf-repo"
    assert main(["export", str(trained_run["out"]), str(pub), "--license", "apache-2.0"]) == 0
    assert sorted(p.name for p in pub.iterdir()) == [
        "README.md",
        "card.json",
        "samples.png",
        "weights.safetensors",
    ]
    card = json.loads((pub / "card.json").read_text())
    assert "source" not in card["data"] and "metrics" not in card["train"]
    assert "request" not in card and "ledger" not in card
    assert "ledger" not in card["privacy"].get("dataset_spend", {})
    assert "data.source" in card["export"]["removed_fields"]
    text = (pub / "README.md").read_text()
    assert front_matter(text)["license"] == "apache-2.0"
    assert str(trained_run["data"].parent) not in text + json.dumps(card)  # no local paths
    # The published folder is a run: it loads and samples the same images as the original.
    a = Run.load(pub).sample(6, labels=[0, 1, 2] * 2, seed=4)[0]
    b = Run.load(trained_run["out"]).sample(6, labels=[0, 1, 2] * 2, seed=4)[0]
    np.testing.assert_array_equal(a, b)
    assert main(["sample", str(pub), "-n", "4", "--out", str(tmp_path / "s.npz")]) == 0
    # Replacing an export needs --overwrite, and leaves no temporary folder.
    assert main(["export", str(trained_run["out"]), str(pub), "--overwrite"]) == 0
    assert front_matter((pub / "README.md").read_text())["license"] == "other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf-repo", "s.npz"]


def _run_with_quick_eval(tmp_path, trained_run):
    """A copy of the shared run with a quick_eval.json as `train --evaluate` writes it."""
    import shutil

    run = shutil.copytree(trained_run["out"], tmp_path / "run")
    evaluation = {
        "tstr_accuracy": 0.4321,
        "trtr_accuracy": 0.9876,
        "n_synthetic": 96,
        "n_holdout": 24,
        "classifiers": ["lenet"],
    }
    (run / "quick_eval.json").write_text(json.dumps(evaluation))
    return run


def test_export_publishes_no_evaluation_without_include_evaluation(tmp_path, trained_run):
    import re
    import shutil

    run = _run_with_quick_eval(tmp_path, trained_run)
    pub = tmp_path / "pub"
    assert main(["export", str(run), str(pub)]) == 0
    text = (pub / "README.md").read_text()
    published = text + (pub / "card.json").read_text()
    # The same run without its evaluation file is the baseline: any percentage the
    # evaluation adds (TRTR 98.8%, TSTR 43.2%) would be new. Comparing against it,
    # not against fixed strings, because the privacy statement has percentages of
    # its own that can coincide with the figures.
    bare = shutil.copytree(trained_run["out"], tmp_path / "bare")
    assert main(["export", str(bare), str(tmp_path / "bare-pub")]) == 0
    baseline = (tmp_path / "bare-pub" / "README.md").read_text()
    baseline += (tmp_path / "bare-pub" / "card.json").read_text()
    percentages = re.compile(r"\d+(?:\.\d+)?%")
    assert set(percentages.findall(published)) <= set(percentages.findall(baseline))
    assert "TRTR" not in text and "TSTR" not in text
    assert "--include-evaluation" in text  # says how to add them, and why they are left out
    assert not (pub / "quick_eval.json").exists()


def test_export_include_evaluation_labels_figures_not_covered(tmp_path, trained_run):
    run = _run_with_quick_eval(tmp_path, trained_run)
    pub = tmp_path / "pub"
    assert main(["export", str(run), str(pub), "--include-evaluation"]) == 0
    text = (pub / "README.md").read_text()
    heading = next(line for line in text.splitlines() if line.startswith("## Evaluation"))
    assert "not covered" in heading and "guarantee" in heading
    section = text[text.index(heading) : text.index("## How to sample")]
    assert "98.8%" in section and "43.2%" in section


def test_public_data_named_in_words_and_export_has_no_local_path(tmp_path, tiny_npz, capsys):
    from tests.conftest import make_tiny_dataset

    public = make_tiny_dataset(n=96, seed=3)
    folder = tmp_path / "local-only-folder"
    folder.mkdir()
    path = folder / "public-digits.npz"
    np.savez(path, images=public.images, labels=public.labels)
    out = tmp_path / "r"
    vae = ["--set=epochs=2", "--set=batch_size=32", "--set=width=8", "--set=z_dim=4"]
    args = ["--method", "dpvae", "--data", str(tiny_npz), "--out", str(out), *vae]
    args += ["--noise-multiplier", "1.5", "--public-data", str(path), "--warmup-epochs", "1"]
    assert main(["train", *args, "--no-progress"]) == 0
    capsys.readouterr()
    readme = (out / "README.md").read_text()
    assert "pretrained on public data: `public-digits` (96 images)" in readme
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "pretrained on public data: `public-digits` (96 images)" in info
    assert str(folder) not in info  # named as the user gave it, not by its local path
    pub = tmp_path / "pub"
    assert main(["export", str(out), str(pub)]) == 0
    published = (pub / "README.md").read_text() + (pub / "card.json").read_text()
    assert "pretrained on public data: `public-digits` (96 images)" in published
    assert str(folder) not in published and "local-only-folder" not in published
    assert str(tiny_npz.parent) not in published  # nor the private data's path
    card = json.loads((pub / "card.json").read_text())
    assert "privacy.warmup.public_data.source" in card["export"]["removed_fields"]


def _old_fingerprints(images: np.ndarray, labels: np.ndarray, names: list[str]) -> list[str]:
    """What earlier cards carried: the pixel fingerprint and the source fingerprint."""
    import hashlib

    pixels = hashlib.sha256()
    pixels.update(str(images.shape).encode())
    pixels.update(images.tobytes())
    pixels.update(np.asarray(labels, dtype=np.int64).tobytes())
    pixels.update("\x00".join(names).encode())
    source = hashlib.sha256(b"privsynth-source/1")
    for part in (images, np.asarray(labels)):
        source.update(f"{part.dtype.str}{part.shape}".encode())
        source.update(np.ascontiguousarray(part).tobytes())
        source.update(b"\x00")
    return [pixels.hexdigest(), source.hexdigest()]


def test_exported_card_has_no_data_hash(tmp_path, trained_run, capsys):
    """Nothing published (exported card, model cards, `info`) holds a value computable from the
    training images without the ledger's secret: no hash of pixels, labels or file, no keyed
    key either (only the random run id)."""
    import hashlib

    from privsynth.data import load_dataset

    pub = tmp_path / "pub"
    assert main(["export", str(trained_run["out"]), str(pub)]) == 0
    capsys.readouterr()
    assert main(["info", str(pub)]) == 0
    assert main(["info", str(trained_run["out"])]) == 0
    published = "\n".join(
        [
            (pub / "card.json").read_text(),
            (pub / "README.md").read_text(),
            (trained_run["out"] / "README.md").read_text(),
            capsys.readouterr().out,
        ]
    )
    data = trained_run["dataset"]
    loaded = load_dataset(trained_run["data"])
    split = json.loads((trained_run["out"] / "split.json").read_text())
    train = loaded.subset(np.asarray(split["train"]))
    names = loaded.class_names
    key = Run.load(trained_run["out"]).card["data"]["dataset_key"]
    secrets = [
        hashlib.sha256(data.images.tobytes()).hexdigest(),
        hashlib.sha256(data.labels.tobytes()).hexdigest(),
        hashlib.sha256(trained_run["data"].read_bytes()).hexdigest(),
        *_old_fingerprints(loaded.images, loaded.labels, names),
        *_old_fingerprints(train.images, train.labels, names),
        *_old_fingerprints(data.images, data.labels, names),
        loaded.fingerprint,
        train.fingerprint,
        loaded.content.digest.hex(),
        key,  # keyed, but still per dataset: it links releases of the same data
    ]
    for value in secrets:
        assert value[:12] not in published, value
    card = json.loads((pub / "card.json").read_text())
    assert "check" not in card["data"] and "dataset_key" not in card["data"]
    assert "dataset_key" not in card["privacy"].get("ledger", {})
    assert card["run_id"] in published
