#!/usr/bin/env bash
# The README's install, nothing more: a fresh virtual environment WITHOUT system site-packages,
# `pip install -e .` (no extras), then the CLI's federated feature paths at tiny size — client-level
# DP with plain, SecAgg+ and CKKS aggregation in-process, and SecAgg+ with client-level DP as real
# local processes (SuperLink + SuperNodes, the CLI's default mode). Every run must exit 0 and
# write a card with both guarantees. Catches a feature that only works because a test extra (or
# something installed by hand) happens to bring a dependency.
#
#   bash scripts/check_plain_install.sh            # venv in a temporary folder, removed after
#   PLAIN_VENV=/tmp/plain bash scripts/...          # reuse / keep this venv
#   PLAIN_QUICK=1 bash scripts/...                  # skip the real-process run (~1 min)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
VENV="${PLAIN_VENV:-$WORK/venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/privsynth" ]; then
    echo "plain install: $PYTHON -m venv $VENV; pip install torch==2.13.0; pip install -e $ROOT"
    "$PYTHON" -m venv "$VENV"
    # torch first, pinned as pyproject pins it, so pip takes this machine's CPU wheel
    if ! { "$VENV/bin/pip" install -q "torch==2.13.0" && "$VENV/bin/pip" install -q -e "$ROOT"; } \
            > "$WORK/pip.log" 2>&1; then
        echo "FAILED: pip install"; tail -20 "$WORK/pip.log"; exit 1
    fi
else
    "$VENV/bin/pip" install -q -e "$ROOT" > "$WORK/pip.log" 2>&1  # dependencies may have changed
fi
PS="$VENV/bin/privsynth"
export OMP_NUM_THREADS=1
# Book into a throw-away ledger, never the per-user one of whoever runs the check.
export PRIVSYNTH_LEDGER="$WORK/ledger.sqlite"

# tiny: 8x8 digits, 2 owners, 1 round of 2 local steps, a few-channel GAN
TINY=(--data digits --clients 2 --rounds 1 --local-steps 2 --accountant rdp --epsilon 10
      --set batch_size=32 --set width=8 --set g_width=8 --set z_dim=8 --set n_d=2
      --client-epsilon 20 --client-delta 1e-3)

check_card() {  # run folder -> both guarantees on the card, weights saved
    "$VENV/bin/python" - "$1" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
card = json.loads((out / "card.json").read_text())
assert "client_level" in card["privacy"] and "sample_level" in card["privacy"], card["privacy"]
assert (out / "weights.safetensors").exists()
print(f"  ok: {out.name}: {card['privacy']['guarantee']}")
EOF
}

run() {  # name, extra flags...
    local name="$1"; shift
    echo "privsynth federate ${TINY[*]} $* --out $WORK/$name"
    if ! "$PS" federate "${TINY[@]}" "$@" --out "$WORK/$name" > "$WORK/$name.log" 2>&1; then
        echo "FAILED: $name (plain install)"; tail -20 "$WORK/$name.log"; exit 1
    fi
    check_card "$WORK/$name"
}

run plain-client-dp --inprocess
run secagg-client-dp --inprocess --secure-aggregation
run ckks-client-dp --inprocess --encrypted-aggregation
if [ -z "${PLAIN_QUICK:-}" ]; then
    run processes-secagg-client-dp --secure-aggregation --timeout 400
fi
echo "plain install: every federated CLI path ran"
