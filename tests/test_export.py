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
        if d["fingerprint"] == card["data"]["source_fingerprint"]
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
