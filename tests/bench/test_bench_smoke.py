"""The benchmark scripts at --smoke size (seconds), so they keep running as the code changes.

The real figures come from the full runs (see docs/gan.md); nothing here asserts timings.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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
    code = load("warmup_bench").main(
        ["--smoke", "--out", str(tmp_path / "runs"), "--result", str(out)]
    )
    assert code == 0
    cells = {c["variant"]: c for c in json.loads(out.read_text())["cells"]}
    assert set(cells) == {"none", "central"}
    assert cells["central"]["warmup_sigma"] > 0 and cells["none"]["warmup_sigma"] is None
    assert all(c["epsilon_spent"] <= 10 * 1.001 for c in cells.values())


def test_utility_bench_smoke_resumes_and_lists_cells_not_run(tmp_path, tiny_npz):
    bench = load("utility")
    out, result = tmp_path / "cells", tmp_path / "utility.json"
    args = [
        "--smoke",
        "--data",
        str(tiny_npz),
        "--methods",
        "dpmerf",
        "--out",
        str(out),
        "--result",
        str(result),
        "--ledger",
        str(tmp_path / "ledger.sqlite"),
    ]
    assert bench.main([*args, "--epsilons", "10"]) == 0
    table = json.loads(result.read_text())
    assert not table["partial"] and table["not_run"] == []
    assert [(r["method"], r["epsilon"]) for r in table["rows"]] == [("dpmerf", 10.0)]
    for r in table["rows"]:
        assert set(r["tstr"]) == {"lenet", "resnet"}
        assert all(0 <= t["accuracy"] <= 1 for t in r["tstr"].values())
        assert r["fd_lenet"] >= 0 and 0 <= r["prdc"]["recall"] <= 1
        assert r["trained_by_this_bench"] and r["train"]["peak_rss_mib"] > 0
    assert 0 < table["rows"][0]["epsilon_spent"] <= 10 * 1.001
    assert set(table["reference"]["trtr"]) == {"lenet", "resnet"}
    assert result.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a rerun trains nothing, reuses the cached evaluations, and names the cell it did not train
    created = [r["created"] for r in table["rows"]]
    assert bench.main([*args, "--epsilons", "10,inf", "--collect"]) == 0
    again = json.loads(result.read_text())
    assert [r["created"] for r in again["rows"]] == created
    assert [r["tstr"] for r in again["rows"]] == [r["tstr"] for r in table["rows"]]
    assert [(n["method"], n["epsilon"]) for n in again["not_run"]] == [("dpmerf", "inf")]
    assert "not trained" in again["not_run"][0]["reason"]
    assert not (out / "cells" / "dpmerf-epsinf").exists()

    # another classifier schedule is another protocol: the cached evaluation is not reused
    seen = table["rows"][0]["tstr"]["lenet"]["images_seen"]
    assert bench.main([*args, "--epsilons", "10", "--collect", "--passes", str(4 * seen)]) == 0
    longer = json.loads(result.read_text())["rows"][0]["tstr"]["lenet"]
    assert longer["images_seen"] > seen

    # a sampling-time override evaluates the same weights again, under its own grid and record
    resample = ["--epsilons", "10", "--collect", "--sample-set", "dpmerf:steps=11"]
    assert bench.main([*args, *resample]) == 0
    assert json.loads(result.read_text())["rows"][0]["sample_set"] == {"steps": 11}
    assert (out / "cells" / "dpmerf-eps10" / "utility_grid-steps=11.png").exists()
    with pytest.raises(SystemExit, match="unknown option"):
        bench.main([*args, "--epsilons", "10", "--collect", "--sample-set", "dpmerf:nope=1"])
    with pytest.raises(SystemExit, match="dpmerf-eps10: .*steps"):  # a known field, bad value
        bench.main([*args, "--epsilons", "10", "--collect", "--sample-set", "dpmerf:steps=0"])
    with pytest.raises(SystemExit, match="METHOD=PATH"):
        bench.main([*args, "--epsilons", "10", "--collect", "--public-data", "public.npz"])

    # a finished cell trained with another seed is not passed off as a reseed; nothing is written
    before = result.read_bytes()
    with pytest.raises(SystemExit, match="trained with seed 0, not --seed 1"):
        bench.main([*args, "--epsilons", "10", "--collect", "--seed", "1"])
    assert result.read_bytes() == before


def test_federated_dpmerf_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVSYNTH_LEDGER", str(tmp_path / "ledger.sqlite"))
    out = tmp_path / "fedmerf.json"
    assert (
        load("federated_dpmerf").main(
            ["--smoke", "--keep", str(tmp_path / "runs"), "--out", str(out)]
        )
        == 0
    )
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"central", "secagg"}
    assert results["central"]["accountant"] == "prv" and results["secagg"]["accountant"] == "rdp"
    for r in results.values():
        assert r["epsilon"] <= 10 * 1.01 and 0.0 <= r["tstr"] <= 1.0
    assert results["secagg"]["noise_std_released"] >= results["secagg"]["noise_multiplier"]


def test_merf_witness_smoke(tmp_path, tiny_npz, trained_run):
    import privsynth

    cfg = {"n_features": 300, "steps": 100, "batch_size": 30, "g_width": 8, "z_dim": 8}
    run = privsynth.train(
        str(tiny_npz), "dpmerf", tmp_path / "r", epsilon=10, config=cfg, progress=False
    )
    out = tmp_path / "w.json"
    assert load("merf_witness").main([str(run.path), "--n", "300", "--result", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["witness_floor"] == 0.2 and 0 <= result["blown_out_share"] <= 1
    assert result["real_holdout"]["n"] > 0 and "0.5" in result["real_holdout"]["quantiles"]
    with pytest.raises(SystemExit, match="no released embedding"):  # a dpgan run has none
        load("merf_witness").main([str(trained_run["out"]), "--result", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
