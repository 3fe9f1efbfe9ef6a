"""The decode loop itself: outputs kept to the bit across changes of the search loop and the cache
(tests/golden/generation.json, recorded before them), and no host synchronisation per decode step
beyond the one the search needs."""

from __future__ import annotations

import json

from generation_cases import GOLDEN, decode_all


def test_outputs_equal_the_recorded_ones_to_the_bit():
    expected = json.loads(GOLDEN.read_text())
    found = json.loads(json.dumps(decode_all()))
    assert found.keys() == expected.keys()
    differ = [name for name in expected if found[name] != expected[name]]
    assert not differ, f"outputs changed: {differ}"
