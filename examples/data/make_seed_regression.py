"""Generate the data of ``examples/seed_regression.toml``: the seed's literal regression setup.

The seed text trains an LSTM on ``inputs = randn(1000, 4, 10)`` (1000 sequences of 4 steps of 10
features) against ``targets = randn(1000, 1)``. The targets are drawn independently of the inputs,
so there is nothing to learn: a model can only memorise the training set, and its error on new
examples drawn the same way cannot beat predicting the training mean (r2 <= 0 up to noise).

Writes next to this script (``numpy`` .npz, arrays ``inputs`` (N, 4, 10) and ``targets`` (N, 1),
float32):

* ``seed_regression.train.npz``: the 1000 examples of the literal setup;
* ``seed_regression.valid.npz``: 200 more examples drawn the same way;
* ``seed_regression.test.npz``: 200 more examples drawn the same way.

Running ``python examples/data/make_seed_regression.py`` with no arguments regenerates the shipped
files byte for byte: the draws are seeded (numpy's PCG64, seed 0, one generator per split) and the
.npz archives are written with a fixed timestamp.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

STEPS, FEATURES, OUTPUTS = 4, 10, 1
SIZES = {"train": 1000, "valid": 200, "test": 200}
SEED = 0


def draw(split: str, n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """``inputs`` (n, 4, 10) and ``targets`` (n, 1), standard normal and independent of each other."""
    rng = np.random.default_rng([seed, list(SIZES).index(split)])
    inputs = rng.standard_normal((n, STEPS, FEATURES)).astype(np.float32)
    targets = rng.standard_normal((n, OUTPUTS)).astype(np.float32)
    return {"inputs": inputs, "targets": targets}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``numpy.savez`` (uncompressed: normal noise does not compress), with a fixed
    timestamp so that the same arrays give the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                             buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write the .npz files to (default: next to this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, n in SIZES.items():
        path = args.out / f"seed_regression.{split}.npz"
        arrays = draw(split, n)
        write_npz(path, arrays)
        print(f"{path}: inputs {arrays['inputs'].shape}, targets {arrays['targets'].shape}")


if __name__ == "__main__":
    main()
