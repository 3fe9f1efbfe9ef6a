"""The decode loop itself: outputs kept to the bit across changes of the search loop and the cache
(tests/golden/generation.json, recorded before them), and no host synchronisation per decode step
beyond the one the search needs."""

from __future__ import annotations

import json

import pytest
import torch
from generation_cases import DECODERS, GOLDEN, decode_all, ends_early, make_model, sources
from torch.overrides import TorchFunctionMode

from seqkit.generate import SearchConfig, generate


def test_outputs_equal_the_recorded_ones_to_the_bit():
    expected = json.loads(GOLDEN.read_text())
    found = json.loads(json.dumps(decode_all()))
    assert found.keys() == expected.keys()
    differ = [name for name in expected if found[name] != expected[name]]
    assert not differ, f"outputs changed: {differ}"


class SyncCounter(TorchFunctionMode):
    """Counts the calls that make the host wait for the device, from the first decoder call on:
    ``.item()``, ``.tolist()``, ``bool()``/``int()``/``float()`` of a tensor, ``nonzero``, ``.cpu()``,
    indexing with a boolean mask (a hidden ``nonzero``), ``repeat_interleave`` with tensor repeats."""

    NAMES = {"item", "tolist", "__bool__", "is_nonzero", "__int__", "__float__", "__index__", "nonzero",
             "argwhere", "cpu", "numpy", "masked_select", "unique"}

    def __init__(self, decoder):
        super().__init__()
        self.steps, self.syncs, self.seen = 0, 0, []
        decoder.register_forward_pre_hook(self._step)

    def _step(self, module, args):
        self.steps += 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self.steps and (name in self.NAMES or self._hidden(name, args)):
            self.syncs += 1
            self.seen.append(name)
        return func(*args, **kwargs)

    @staticmethod
    def _hidden(name: str, args) -> bool:
        if name in ("__getitem__", "__setitem__"):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
        return name == "repeat_interleave" and len(args) > 1 and isinstance(args[1], torch.Tensor)


SYNC_CASES = {
    "transformer greedy": ("transformer-post", SearchConfig(max_len=12)),
    "transformer greedy min_len": ("transformer-post", SearchConfig(max_len=12, min_len=5)),
    "transformer beam 4": ("transformer-post", SearchConfig(max_len=12, beam=4, nbest=2)),
    "transformer beam 3 length penalty": ("transformer-pre", SearchConfig(max_len=10, beam=3,
                                                                          length_penalty=1.0)),
    "lstm greedy": ("lstm-general", SearchConfig(max_len=12)),
    "lstm-additive beam 4": ("lstm-additive", SearchConfig(max_len=12, beam=4)),
    "gru sampling": ("gru-dot", SearchConfig(max_len=10, sample=True, seed=7, top_k=10)),
}


@pytest.mark.parametrize("prompts", [False, True], ids=["sources", "sources+prompts"])
@pytest.mark.parametrize("case", SYNC_CASES)
def test_one_host_sync_per_decode_step(case, prompts):
    """Greedy search and sampling wait for the device once per step (the chosen tokens) and once
    at the end (the scores); beam search once per step (the top candidates). Rows end at
    different steps here, so dropping finished rows is counted too."""
    name, config = SYNC_CASES[case]
    model = ends_early(make_model(DECODERS[name]), *sources())
    source, mask = sources()
    counter = SyncCounter(model.decoder)
    with counter:
        found = generate(model, source, mask, config,
                         prompts=[[5, 6], [], [7, 8, 9], [5], [10, 11]] if prompts else None)
    lengths = {len(h[0].tokens) for h in found}
    assert counter.steps >= 2
    expected = counter.steps + (1 if config.beam == 1 else 0)
    assert counter.syncs == expected, (f"{counter.syncs} host syncs in {counter.steps} decoder calls "
                                       f"(outputs of {sorted(lengths)} tokens): {counter.seen}")
