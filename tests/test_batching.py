"""The numpy batch cutter gives exactly the batches of the per-example loop it replaces (the
greedy cut over examples sorted by size, then shuffled by (seed, epoch)), so prepared data and
resumed runs see the same batches as before, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from seqkit.batching import TokenBatchSampler, cut_sorted


def loop_cut(sizes: list[int], budget: int) -> list[list[int]]:
    """The reference: seqkit's earlier per-example greedy cut, over positions 0..n-1."""
    batches, current, longest = [], [], 0
    for i, size in enumerate(sizes):
        if current and max(longest, size) * (len(current) + 1) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    batches.append(current)
    return batches


def reference_epoch(sizes: np.ndarray, budget: int, seed: int, epoch: int) -> list[list[int]]:
    rng = np.random.default_rng([seed % 2**64, epoch])
    order = np.lexsort((rng.permutation(len(sizes)), sizes))
    batches = [[int(order[i]) for i in b] for b in loop_cut(sizes[order].tolist(), budget)]
    return [batches[i] for i in rng.permutation(len(batches))]


@pytest.mark.parametrize("seed", range(40))
def test_cut_equals_the_per_example_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    high = int(rng.choice([3, 20, 300]))
    sizes = np.sort(rng.integers(1, high, n))
    budget = int(rng.choice([1, 7, 64, 500, 4096]))  # also budgets below some sizes
    starts = cut_sorted(sizes, budget)
    expected = loop_cut(sizes.tolist(), budget)
    assert starts.tolist() == [b[0] for b in expected]


@pytest.mark.parametrize("seed", range(10))
def test_epochs_and_evaluation_order_equal_the_reference(seed):
    rng = np.random.default_rng(100 + seed)
    sizes = rng.integers(1, 60, int(rng.integers(1, 500)))
    budget = int(rng.choice([16, 100, 1000]))
    sampler = TokenBatchSampler(sizes, budget, seed=seed)
    for epoch in range(3):
        assert sampler.epoch_batches(epoch) == reference_epoch(sizes, budget, seed, epoch)
    order = np.argsort(sizes, kind="stable")
    expected = [[int(order[i]) for i in b] for b in loop_cut(sizes[order].tolist(), budget)]
    assert sampler.ordered_batches() == expected
    assert len(sampler) == len(expected)


def test_iteration_and_resume_position():
    sampler = TokenBatchSampler(list(range(1, 50)), 100, seed=3)
    stream = iter(sampler)
    first = [next(stream) for _ in range(len(sampler) + 2)]  # into the second epoch
    resumed = TokenBatchSampler(list(range(1, 50)), 100, seed=3)
    resumed.load_state_dict({"epoch": 1, "index": 1})
    assert next(iter(resumed)) == first[len(sampler) + 1]
    assert sampler.state_dict() == {"epoch": 1, "index": 2}


def test_a_batch_is_a_list_of_ints_and_bad_positions_are_index_errors():
    batches = TokenBatchSampler([3, 1, 2], 4).ordered_batches()
    assert batches[0] == [1, 2] and batches[1] == [0] and all(isinstance(i, int) for b in batches for i in b)
    with pytest.raises(IndexError):
        batches[len(batches)]


@pytest.mark.parametrize("largest", [50, 2**61])  # one argsort of combined keys, or lexsort
def test_sorting_by_size_then_tie_break_equals_lexsort(largest):
    from seqkit.batching import _by_size

    rng = np.random.default_rng(0)
    sizes = np.append(rng.integers(1, 5, 200), largest)
    tie_break = rng.permutation(len(sizes))
    assert _by_size(sizes, lambda n: tie_break).tolist() == np.lexsort((tie_break, sizes)).tolist()
