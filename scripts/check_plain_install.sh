#!/usr/bin/env bash
# The README's installs, nothing more: a fresh virtual environment WITHOUT system site-packages.
# 1. `pip install -e .` (no extras): central training's install must not bring Flower/TenSEAL,
#    and `privsynth federate` (and `privsynth sweep --ray`, without Ray) must then stop with one
#    line naming the extra (exit 2).
# 2. `pip install -e ".[federated]"`, then the CLI's federated feature paths at tiny size —
#    client-level DP with plain, SecAgg+ and CKKS aggregation in-process, federated dpmerf under
#    SecAgg+ in-process, and SecAgg+ with client-level DP as real local processes (SuperLink +
#    SuperNodes, the CLI's default mode). Every run must exit 0 and write its card.
# Catches a feature that only works because a test extra (or something installed by hand)
# happens to bring a dependency.
#
#   bash scripts/check_plain_install.sh            # venv in a temporary folder, removed after
#   PLAIN_VENV=/tmp/plain bash scripts/...          # reuse / keep this venv (step 1 is skipped
#                                                   # when it already holds Flower)
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
export OMP_NUM_THREADS=1
# Book into a throw-away ledger, never the per-user one of whoever runs the check.
export PRIVSYNTH_LEDGER="$WORK/ledger.sqlite"

if ! "$VENV/bin/python" -c "import flwr" 2> /dev/null; then
    echo "plain install has no Flower/TenSEAL; privsynth federate must name the extra"
    "$VENV/bin/python" -c "import tenseal" 2> /dev/null && { echo "FAILED: tenseal installed"; exit 1; }
    set +e
    "$VENV/bin/privsynth" federate --data digits --inprocess --out "$WORK/none" > "$WORK/none.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" != 2 ] || [ "$(wc -l < "$WORK/none.log")" != 1 ] \
            || ! grep -q "privsynth\[federated\]" "$WORK/none.log"; then
        echo "FAILED: federate without the extra (exit $rc):"; cat "$WORK/none.log"; exit 1
    fi
    echo "  ok: $(cat "$WORK/none.log")"
else
    echo "plain install: $VENV already holds Flower; skipping the missing-extra check"
fi
if ! "$VENV/bin/python" -c "import ray" 2> /dev/null; then
    echo "plain install has no Ray; privsynth sweep --ray must name the extra"
    set +e
    "$VENV/bin/privsynth" sweep --data digits --out "$WORK/sw" --ray auto > "$WORK/sw.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" != 2 ] || [ "$(wc -l < "$WORK/sw.log")" != 1 ] || ! grep -q '\[ray\]' "$WORK/sw.log"
    then
        echo "FAILED: sweep --ray without the extra (exit $rc):"; cat "$WORK/sw.log"; exit 1
    fi
    echo "  ok: $(cat "$WORK/sw.log")"
fi
echo "federated extra: pip install -e $ROOT[federated]"
if ! "$VENV/bin/pip" install -q -e "$ROOT[federated]" > "$WORK/pip.log" 2>&1; then
    echo "FAILED: pip install .[federated]"; tail -20 "$WORK/pip.log"; exit 1
fi
PS="$VENV/bin/privsynth"

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

"$PS" federate --data digits --method dpmerf --clients 3 --epsilon 10 --inprocess \
    --secure-aggregation --set n_features=50 --set steps=3 --out "$WORK/dpmerf-secagg" \
    > "$WORK/dpmerf.log" 2>&1 || { echo "FAILED: dpmerf-secagg"; tail -20 "$WORK/dpmerf.log"; exit 1; }
"$VENV/bin/python" -c "import json,sys; c=json.load(open(sys.argv[1])); \
assert c['privacy']['mechanism']['variant'] == 'secagg'; print('  ok: dpmerf-secagg:', \
c['privacy']['guarantee'][:60])" "$WORK/dpmerf-secagg/card.json"
run plain-client-dp --inprocess
run secagg-client-dp --inprocess --secure-aggregation
run ckks-client-dp --inprocess --encrypted-aggregation
if [ -z "${PLAIN_QUICK:-}" ]; then
    run processes-secagg-client-dp --secure-aggregation --timeout 400
fi
echo "plain install: central needs no extra; every federated CLI path ran with [federated]"
