"""The data a run trains on: the task fitted (or its state read back from prepared data), and the
train split prepared once into memory-mapped files (``seqkit.prepared``) that every later run,
resume and process reuses; with ``data.prepare = false`` the split is encoded in memory instead.

Under torchrun rank 0 fits and prepares; the others wait for it and open the same files, so the
processes of one machine share one copy of the data in the page cache.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from torch import Tensor

from seqkit.config import DataConfig, RunConfig
from seqkit.data import EncodedSplit, SplitEncoder, encode_split, report_counts
from seqkit.data_cache import Prepared
from seqkit.distributed import Group
from seqkit.errors import DataError
from seqkit.events import Events
from seqkit.interfaces import Example, Task
from seqkit.plugins import PluginManager
from seqkit.prepared import PreparedSplit, open_split
from seqkit.ragged import TokenArrays

FIT_PHASE = "task.fit on train (vocabularies, tokenizers)"


def prepared_data(config: RunConfig, manager: PluginManager) -> Prepared:
    """Where ``config``'s prepared data are (hashing its data files and the task plugin's code)."""
    registration = manager.get("task", config.task.name)
    package = (registration.module or "").partition(".")[0]
    extra = {"bad_lines": config.data.bad_lines, "fit_examples": config.data.fit_examples}
    return Prepared.of(config.task.name, config.task.options, extra=extra, code=(package,) if package else ())


def fit(task: Task, data: DataConfig, prepared: Prepared | None, events: Events) -> None:
    """Fit ``task`` on its train split (at most ``data.fit_examples`` of it), or give it the state
    fitted on the same data before."""
    state = prepared.state() if prepared is not None else None
    if state is not None:
        with events.timed(f"reading the prepared task state ({prepared.folder})"):
            task.load_state_dict(state)
        return
    with events.timed(FIT_PHASE):
        task.fit(fit_sample(task.examples("train"), data.fit_examples))
    if prepared is not None:
        prepared.save_state(task.state_dict())


def fit_sample(examples: Iterable[Example], limit: int, seed: int = 0) -> Iterator[Example]:
    """At most ``limit`` (0: no limit) of ``examples``, each as likely as any other (reservoir
    sampling, seeded: the same data give the same sample), in the order they came. A split no
    larger than ``limit`` is passed through as it is. Past the first ``limit``, the examples
    skipped are passed over in C, without a draw each (Li's algorithm L)."""
    if limit == 0:
        yield from examples
        return
    rng = random.Random(seed)
    examples = iter(examples)
    kept = list(itertools.islice(enumerate(examples), limit))  # (index, example)
    if len(kept) == limit:
        log_weight = math.log(_draw(rng)) / limit  # (in logs: near 1, 1 - weight would round to 0)
        index = limit - 1
        while True:
            skip = math.floor(math.log(_draw(rng)) / math.log(-math.expm1(log_weight)))
            example = next(itertools.islice(examples, skip, None), _END)
            if example is _END:
                break
            index += skip + 1
            kept[rng.randrange(limit)] = (index, example)
            log_weight += math.log(_draw(rng)) / limit
    kept.sort(key=lambda pair: pair[0])
    yield from (example for _, example in kept)


_END = object()


def _draw(rng: random.Random) -> float:
    """A number in (0, 1)."""
    while not (value := rng.random()):
        pass
    return value


def train_split(task: Task, data: DataConfig, prepared: Prepared | None, group: Group,
                events: Events) -> EncodedSplit | PreparedSplit:
    """The train split: with ``data.prepare``, prepared (made now if missing, by rank 0, which
    alone is given ``prepared``, while the others wait) or else encoded in memory."""
    if not data.prepare:
        with events.timed("encoding train"):  # every rank encodes; rank 0 alone warns
            return encode_split(task, "train", data, warn=group.is_main)
    folder = None
    if group.is_main:
        if prepared is None:
            raise ValueError("train_split: rank 0 needs the Prepared of data.prepare")
        split = prepare_split(task, data, prepared, events)
        folder = str(split.folder)
    folder = group.broadcast_json(folder)
    if not group.is_main:
        split = open_split(Path(folder), "train", verify=False)  # rank 0 has just checked it
        if split is None:
            raise DataError(f"{folder}: the prepared train split rank 0 wrote cannot be read")
    return split


def prepare_split(task: Task, data: DataConfig, prepared: Prepared, events: Events) -> PreparedSplit:
    """The prepared train split of ``task`` (fitted), written first when missing."""
    folder = prepared.encoding(task.state_dict(), data)
    if (folder / "manifest.json").exists():
        with events.timed(f"reading the prepared train split ({folder})"):
            found = open_split(folder, "train")  # None when damaged: prepared again below
        if found is not None:  # what was dropped or truncated is said at every start, as when made
            report_counts("train", found.stats, data, False, set(found.stats.get("long_sides", ())), True)
            return found
    with events.timed(f"preparing the train split (encoding into {folder})"):
        return prepared.split(task, "train", data, _encoded)


def _encoded(task: Task, split: str, data: DataConfig, stats: dict[str, Any]
             ) -> Iterator[tuple[Tensor | TokenArrays | None, Tensor | TokenArrays, str]]:
    """The examples training keeps, for Prepared.split: many at a time from a task with
    ``encode_batch``, else one by one; ``stats`` gets the counts at the end."""
    encoder = SplitEncoder(task, split, data, evaluation=False)
    if batched(task):
        yield from encoder.chunks()
    else:
        for example, source, target, _ in encoder:
            yield source, target, example.where
    stats.update(encoder.finish())
    stats["long_sides"] = sorted(encoder.long_sides)  # for the warnings of later starts


def batched(task: Task) -> bool:
    """Whether ``task`` encodes many examples at once (defines ``Task.encode_batch``) and its
    sources and targets are token ids."""
    return type(task).encode_batch is not Task.encode_batch and \
        getattr(task, "model_kind", None) in ("seq2seq", "language_model")
