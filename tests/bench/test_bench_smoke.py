"""The benchmark scripts at --smoke size (seconds), so they keep running as the code changes.

The real figures come from the full runs (see docs/gan.md); nothing here asserts timings.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_speed_dp_smoke(tmp_path):
    out = tmp_path / "speed.json"
    assert load("speed_dp").main(["--smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["methods"]) == {"dpgan", "dpvae", "dpdiffusion"}
    assert result["default_ratio"] == result["methods"]["dpgan"]["default_ratio"] > 0
    for method in result["methods"].values():
        modes = method["modes"]
        assert modes["none"]["ratio_to_non_dp"] == 1.0
        for mode in ("bk", "hooks"):  # the default and Opacus' reference mode are exact
            assert modes[mode]["exact"] is True
        assert method["fastest_exact_dp_mode"] in modes
        for mode in ("hooks", "functorch", "ew"):  # each mode either ran or says why not
            assert mode in modes or mode in method["errors"]
    assert result["methods"]["dpgan"]["modes"]["bk_public"]["exact"] is True


def test_quality_gan_smoke(tmp_path):
    out = tmp_path / "quality.json"
    assert load("quality_gan").main(["--smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    runs = result["datasets"]["digits"]["runs"]
    assert [r["epsilon_target"] for r in runs] == [1.0, 10.0, "infinity"]
    assert runs[0]["epsilon_spent"] <= 1.0 * 1.01 and runs[1]["epsilon_spent"] <= 10 * 1.01
    assert all(0.0 <= r["tstr_accuracy"] <= 1.0 for r in runs)
    assert all(0.0 <= r["recall"] <= 1.0 and r["spread_ratio_mean"] >= 0 for r in runs)
    assert 0.0 <= result["datasets"]["digits"]["trtr_accuracy"] <= 1.0
    merged = tmp_path / "study.json"  # a study = several result files' rows in one
    assert load("quality_gan").main(["--merge", str(out), str(out), "--out", str(merged)]) == 0
    assert len(json.loads(merged.read_text())["datasets"]["digits"]["runs"]) == 6


def test_tstr_speed_smoke(tmp_path, trained_run):
    out = tmp_path / "tstr.json"
    assert load("tstr_speed").main([str(trained_run["out"]), "--smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_synthetic"] == 100
    assert all(0 <= result[f"tstr_{c}"]["accuracy"] <= 1 for c in ("lenet", "resnet"))
    assert "ratio_mean" in result["diversity"]


def test_warmup_bench_smoke(tmp_path):
    out = tmp_path / "warmup.json"
    code = load("warmup_bench").main(["--smoke", "--out", str(tmp_path / "runs"), "--result",
                                      str(out)])
    assert code == 0
    cells = {c["variant"]: c for c in json.loads(out.read_text())["cells"]}
    assert set(cells) == {"none", "central"}
    assert cells["central"]["warmup_sigma"] > 0 and cells["none"]["warmup_sigma"] is None
    assert all(c["epsilon_spent"] <= 10 * 1.001 for c in cells.values())


def test_federated_dpmerf_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVSYNTH_LEDGER", str(tmp_path / "ledger.sqlite"))
    out = tmp_path / "fedmerf.json"
    assert load("federated_dpmerf").main(["--smoke", "--keep", str(tmp_path / "runs"),
                                          "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"central", "secagg"}
    assert results["central"]["accountant"] == "prv" and results["secagg"]["accountant"] == "rdp"
    for r in results.values():
        assert r["epsilon"] <= 10 * 1.01 and 0.0 <= r["tstr"] <= 1.0
    assert results["secagg"]["noise_std_released"] >= results["secagg"]["noise_multiplier"]
