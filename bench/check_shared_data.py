"""Check the shared benchmark data (../shared/data beside the repository), not part of the suite.

The test suite must pass in any clone, so it never reads ../shared; this script is the check that
the MNIST-10k copy the benchmarks use is there and intact. CI runs it as a separate step only
where ../shared/data exists:

    python bench/check_shared_data.py            # default: <repo>/../shared/data
    python bench/check_shared_data.py --root /path/to/shared/data

Exit 0 when every check passes, 1 otherwise (one line per check either way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The official MNIST test set (t10k): 10,000 images, 28 x 28, these per-digit counts.
MNIST_T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def check_mnist_t10k(folder: Path) -> list[tuple[str, bool, str]]:
    from privsynth.data import load_dataset
    from privsynth.errors import PrivsynthError

    try:
        data = load_dataset(folder, classes=10)
    except PrivsynthError as e:
        return [("mnist-t10k loads", False, str(e))]
    counts = data.class_counts().tolist()
    return [
        ("mnist-t10k loads", True, f"{len(data)} images from {folder}"),
        (
            "shape 10000 x 1 x 28 x 28, uint8",
            data.images.shape == (10000, 1, 28, 28) and str(data.images.dtype) == "uint8",
            f"{data.images.shape} {data.images.dtype}",
        ),
        ("per-digit counts", counts == MNIST_T10K_COUNTS, str(counts)),
        (
            "pixels use 0..255",
            int(data.images.min()) == 0 and int(data.images.max()) == 255,
            f"{data.images.min()}..{data.images.max()}",
        ),
        ("fingerprint", len(data.fingerprint) == 64, data.fingerprint[:16]),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="check ../shared/data (benchmark data)")
    p.add_argument(
        "--root",
        type=Path,
        default=ROOT / ".." / "shared" / "data",
        help="the shared data folder (default: ../shared/data beside the repo)",
    )
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(f"shared data: {args.root} not found (nothing to check here)", file=sys.stderr)
        return 1
    results = check_mnist_t10k(args.root / "mnist-t10k")
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
