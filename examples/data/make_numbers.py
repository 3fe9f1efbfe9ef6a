"""Generate the English -> French number-words data for seqkit's main example.

Writes ``numbers.train.tsv``, ``numbers.valid.tsv`` and ``numbers.test.tsv``
next to this script; each line is ``english<TAB>french``, for example::

    three hundred and forty-two	trois cent quarante-deux

Running ``python examples/data/make_numbers.py`` with no arguments regenerates
the shipped files exactly (the sampling is seeded).

How the data is made:

* Numbers are drawn from 0 to 999,999. The three splits are disjoint in
  numbers: they are sampled without replacement with a fixed seed.
* The training split always contains 0-100, the round hundreds 100-900 and
  every round thousand 1,000-999,000, so that every irregular form
  (quatre-vingts, soixante et onze, deux cents, mille, ...) is seen in
  training. The rest is sampled by magnitude, not uniformly (uniform draws are
  99.9% six-digit numbers, and a model trained on them appends "mille" to
  "three hundred and forty-two"): every three-digit number appears in some
  split (6% in test, 3% in valid), and the other draws take four-, five- and
  six-digit numbers in equal shares. 0-100 and the round hundreds appear five
  times each in train (once they were memorised too weakly: "eighty" came out
  as "quatre-vingt-quatre").
* Every English and French word (whitespace-separated token) that appears in
  the validation or test split also appears in the training split; the script
  checks this.
* The spelling comes from the ``num2words`` library, unchanged except that
  commas are dropped from the English side: num2words writes
  "nine hundred and ninety-nine thousand, nine hundred and ninety-nine", the
  data has "nine hundred and ninety-nine thousand nine hundred and
  ninety-nine".

``num2words`` is needed only to regenerate the data; it is not a runtime
dependency of seqkit. The shipped files were made with num2words 0.5.14.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from num2words import num2words

MAX_NUMBER = 999_999
REPEAT_BELOW_1000 = 4  # extra copies of 0-100 and the round hundreds in train: each is a one-off form


def english(n: int) -> str:
    return num2words(n).replace(",", "")


def french(n: int) -> str:
    return num2words(n, lang="fr")


def always_in_train() -> list[int]:
    """0-100, the round hundreds and the round thousands."""
    numbers = set(range(0, 101))
    numbers.update(range(100, 1000, 100))
    numbers.update(range(1000, MAX_NUMBER + 1, 1000))
    return sorted(numbers)


def make_splits(n_train: int, n_valid: int, n_test: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    fixed = always_in_train()
    if n_train < len(fixed):
        raise SystemExit(f"--train must be at least {len(fixed)} (the numbers always in train)")
    fixed_set = set(fixed)
    small = [n for n in range(100, 1000) if n not in fixed_set]
    rng.shuffle(small)
    small_test, small_valid = round(0.06 * len(small)), round(0.03 * len(small))
    splits = {"test": small[:small_test], "valid": small[small_test: small_test + small_valid],
              "train": fixed + REPEAT_BELOW_1000 * [n for n in fixed if n < 1000]
              + small[small_test + small_valid:]}
    taken = set(small) | fixed_set
    for name, size in (("test", n_test), ("valid", n_valid), ("train", n_train)):
        while len(splits[name]) < size:  # four, five and six digits in equal shares
            digits = rng.choice((4, 5, 6))
            n = rng.randrange(10 ** (digits - 1), 10**digits)
            if n not in taken:
                taken.add(n)
                splits[name].append(n)
    rng.shuffle(splits["train"])
    return splits


def words(pairs: list[tuple[str, str]], side: int) -> set[str]:
    return {w for pair in pairs for w in pair[side].split()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20_000, help="training pairs (default 20000)")
    parser.add_argument("--valid", type=int, default=500, help="validation pairs (default 500)")
    parser.add_argument("--test", type=int, default=1_000, help="test pairs (default 1000)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: this script's folder)",
    )
    args = parser.parse_args()

    splits = make_splits(args.train, args.valid, args.test, args.seed)
    data = {name: [(english(n), french(n)) for n in numbers] for name, numbers in splits.items()}

    # Every word of valid/test must have been seen in training.
    for side, lang in ((0, "English"), (1, "French")):
        seen = words(data["train"], side)
        for name in ("valid", "test"):
            unseen = words(data[name], side) - seen
            assert not unseen, f"{lang} words in {name} but not in train: {sorted(unseen)}"

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, pairs in data.items():
        path = args.out_dir / f"numbers.{name}.tsv"
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for en, fr in pairs:
                assert "\t" not in en + fr and "\n" not in en + fr
                f.write(f"{en}\t{fr}\n")
        print(f"{path}: {len(pairs)} pairs")

    everything = [pair for pairs in data.values() for pair in pairs]
    for side, lang in ((0, "English"), (1, "French")):
        max_len = max(len(pair[side]) for pair in everything)
        vocab = "".join(sorted({c for pair in everything for c in pair[side]}))
        print(f"{lang}: max {max_len} characters, {len(vocab)} distinct characters: {vocab!r}")


if __name__ == "__main__":
    main()
