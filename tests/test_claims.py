"""Cell claims: one owner per folder across processes/hosts; stale claims are taken over; a sweep
skips cells another worker holds and lists them as pending."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from privsynth import claims
from privsynth.sweep import sweep


def foreign_claim(folder, host="other-host", pid=1):
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f".{folder.name}.claim"
    path.write_text(json.dumps({"host": host, "pid": pid}))
    return path


def test_one_owner_then_release(tmp_path):
    cell = tmp_path / "cells" / "a"
    assert claims.claim(cell)
    assert claims.holder(cell) == f"{socket.gethostname()}:{os.getpid()}"
    assert not claims.claim(cell)  # held (by us, alive): nobody else gets it
    assert not cell.exists()  # the run folder itself stays untouched for the trainer
    claims.release(cell)
    assert claims.holder(cell) is None and claims.claim(cell)


def test_claims_race_across_processes(tmp_path):
    """Four processes claim one cell at once: exactly one wins. Each stays alive until all have
    tried (it waits on stdin), as a training worker would: a claim whose owner has exited on
    this host is stale by design and may be taken over."""
    cell = tmp_path / "c"
    code = (
        "import sys; from pathlib import Path; from privsynth import claims; "
        "print(int(claims.claim(Path(sys.argv[1]))), flush=True); sys.stdin.read()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(cell)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    won = [int(p.stdout.readline().strip()) for p in procs]
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)
    assert sum(won) == 1


def test_stale_claims_are_taken_over(tmp_path):
    dead = tmp_path / "dead"
    foreign_claim(dead, host=socket.gethostname(), pid=2**22 + 12345)  # no such process
    assert claims.claim(dead)
    quiet = tmp_path / "quiet"
    path = foreign_claim(quiet)
    assert not claims.claim(quiet)  # another host, recent: respected
    old = time.time() - claims.STALE_AFTER_S - 60
    os.utime(path, (old, old))
    assert claims.claim(quiet)


def test_sweep_skips_a_cell_held_elsewhere(tmp_path, tiny_dataset):
    out = tmp_path / "sw"
    foreign_claim(out / "cells" / "dpmerf-eps3")
    config = {"dpmerf": {"n_features": 16, "steps": 5, "batch_size": 30, "g_width": 8, "z_dim": 8}}
    table = sweep(
        tiny_dataset,
        ["dpmerf"],
        [3.0, float("inf")],
        out,
        configs=config,
        eval_epochs=1,
        progress=False,
    )
    assert [r["epsilon"] for r in table["rows"]] == ["inf"]
    assert table["pending"] == [{"cell": "dpmerf-eps3", "worker": "other-host:1"}]
    assert "Still training elsewhere" in (out / "sweep.md").read_text()
    assert not (out / "cells" / "dpmerf-eps3").exists()
    assert not (out / "cells" / ".dpmerf-epsinf.claim").exists()  # released after training
