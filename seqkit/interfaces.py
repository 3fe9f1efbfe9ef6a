"""The contracts between seqkit's core and its plugins.

Shapes: B batch, S source length, T target length, D ``d_model``. Masks are bool with True on
real positions and False on padding; padding is on the right (a row's real positions come
first). Encoders and decoders see embedded sequences (B, T, D): token embedding, feature
projection and the output head belong to the core's model composition.

A decoder cache is a dict of tensors (nested dicts, lists and tuples allowed) whose every tensor
has the batch as dimension 0, so the core can reorder it for beam search, or drop finished rows,
with one ``index_select``; other values (a Python int counting steps) are carried along unchanged.
A decoder whose cache cannot follow that rule overrides ``reorder_cache``.

A decoder may also say which of its state depends on the source only (cross-attention keys and
values, the memory): it keeps that under ``cache["source"]`` and sets ``shares_source = True``.
Beam search then keeps one copy of it per source, shared by the source's beams, and moves it only
when sources leave the batch (``reorder_hypotheses``); what grows per hypothesis is reordered
every step. Decoders written before this (``shares_source`` False) get every row copied, as before.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from seqkit.ragged import TokenArrays
from seqkit.tokenizer_options import SPECIAL_TOKENS as _SPECIAL_TOKENS

Cache = dict[str, Any]
"""Tensors with batch first, possibly nested in dicts, lists and tuples; other values kept as is."""

RecurrentState = Tensor | tuple[Tensor, ...]
"""Batch-first final state of a recurrent encoder: (B, layers, D), or a tuple (LSTM h, c)."""

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
}


# -- encoders and decoders ----------------------------------------------------------------------


@dataclass
class EncoderOutput:
    """What an encoder hands a decoder.

    memory: (B, S, D) one vector per source position; padded positions hold anything.
    mask:   (B, S) bool, True on real positions (the encoder's input mask, unchanged).
    state:  optional final state of a recurrent encoder, batch first (see ``RecurrentState``),
            for decoders that bridge it into their initial state; None for other encoders.
    """

    memory: Tensor
    mask: Tensor
    state: RecurrentState | None = None

    def index_select(self, index: Tensor) -> EncoderOutput:
        """The rows ``index`` of the batch (beam expansion, dropping finished sources)."""
        return EncoderOutput(
            memory=self.memory.index_select(0, index),
            mask=self.mask.index_select(0, index),
            state=map_tensors(lambda t: t.index_select(0, index), self.state),
        )


class Encoder(nn.Module, abc.ABC):
    """Maps an embedded source (B, S, D) with its mask to an :class:`EncoderOutput`.

    Padding must never change the outputs of real positions: a source padded with extra positions
    gives the same memory on its real positions (the conformance suite checks it to 1e-5 in fp32).
    """

    d_model: int

    @abc.abstractmethod
    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        """x: (B, S, D) float; mask: (B, S) bool, True on real positions."""


class Decoder(nn.Module, abc.ABC):
    """Maps an embedded target prefix (B, T, D) to hidden states (B, T, D), causally: the output at
    t depends on y[:, :t+1] and the encoder output only.

    ``forward(y, enc)`` with ``cache=None`` runs the whole sequence at once (training) and returns
    ``(hidden, None)``. For step-by-step decoding, ``init_cache(enc, batch_size, max_len)`` makes a
    cache (cross-attention keys/values of the memory are computed there, once per source), then
    ``forward(y_new, enc, cache)`` takes only the new positions and returns ``(hidden_new, cache)``.
    Running a sequence in pieces through the cache equals running it whole. ``max_len`` bounds the
    target length (a decoder may preallocate with it, or ignore it). With a cache, ``enc`` is the
    encoder output the cache was made from (row-selected like the cache after a reorder); a decoder
    may read the memory from it or keep what it needs in the cache.

    ``enc`` is None for a decoder-only language model; a decoder that cannot run without an
    encoder raises ``ValueError`` from its factory or forward.

    Attention maps are opt-in, never on the fast path: when ``record_attention`` is set, a decoder
    that attends over the memory stores the weights of its last forward, averaged over heads and
    layers as it sees fit, in ``attention_weights`` as (B, T, S).

    **Source state shared by beams** (optional, ``shares_source = True``): the cache keeps what
    depends on the source only under ``cache["source"]``, one row per source, and everything
    else one row per hypothesis. After ``reorder_hypotheses`` the hypothesis rows may outnumber the
    source rows: hypotheses ``i * g .. i * g + g - 1`` then belong to source ``i`` (``g`` the
    hypothesis rows over the source rows), and ``enc`` passed with the cache has the source rows.
    ``reorder_cache`` keeps its meaning (every row, the source part too, follows ``index``).
    """

    d_model: int
    record_attention: bool = False
    attention_weights: Tensor | None = None
    shares_source: ClassVar[bool] = False  # True: cache["source"] is per source (see above)

    @abc.abstractmethod
    def forward(
        self, y: Tensor, enc: EncoderOutput | None, cache: Cache | None = None
    ) -> tuple[Tensor, Cache | None]:
        """y: (B, T, D); returns hidden (B, T, D) and the updated cache (None without one)."""

    @abc.abstractmethod
    def init_cache(self, enc: EncoderOutput | None, batch_size: int, max_len: int) -> Cache:
        """A fresh cache for ``batch_size`` sequences of at most ``max_len`` target positions."""

    def reorder_cache(self, cache: Cache, index: Tensor) -> Cache:
        """The cache of rows ``index`` (beam reordering, dropping finished rows)."""
        return reorder_cache(cache, index)

    def reorder_hypotheses(self, cache: Cache, index: Tensor, sources: Tensor | None) -> Cache:
        """Only called when ``shares_source``: the hypothesis rows ``index`` (grouped by source as
        the class docstring says), and the source rows ``sources`` (None: all stay, in order)."""
        return reorder_hypotheses(cache, index, sources)


def map_tensors(fn: Callable[[Tensor], Tensor], value: Any) -> Any:
    """Apply ``fn`` to every tensor inside nested dicts, lists and tuples; keep everything else."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return {key: map_tensors(fn, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(fn, item) for item in value)
    return value


def reorder_cache(cache: Cache, index: Tensor) -> Cache:
    """The generic reorder: ``index_select(0, index)`` on every tensor of a batch-first cache."""
    return map_tensors(lambda t: t.index_select(0, index), cache)


def reorder_hypotheses(cache: Cache, index: Tensor, sources: Tensor | None) -> Cache:
    """The generic reorder of a cache that shares source state: ``cache["source"]`` takes rows
    ``sources`` (kept as it is when None: no copy), every other tensor rows ``index``."""
    moved = {key: reorder_cache(value, index) for key, value in cache.items() if key != "source"}
    if "source" in cache:
        moved["source"] = cache["source"] if sources is None else reorder_cache(cache["source"], sources)
    return moved


def iter_tensors(value: Any) -> Iterator[Tensor]:
    """Every tensor inside nested dicts, lists and tuples, depth first."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from iter_tensors(item)


# -- tasks --------------------------------------------------------------------------------------

MODEL_KINDS = ("seq2seq", "language_model", "classifier", "regressor")
"""How the core composes a model for a task (see :class:`Task`)."""

PAD, BOS, EOS, UNK = 0, 1, 2, 3
"""Ids of the special tokens in every token vocabulary: padding, begin and end of sequence, unknown."""
SPECIAL_TOKENS = _SPECIAL_TOKENS  # "<pad>", "<bos>", "<eos>", "<unk>"


@dataclass
class Example:
    """One raw example. ``source`` is text or a float sequence (a list of feature vectors), None
    for a language model; ``target`` is text, a class label (str) or a list of float values.
    ``where`` names its origin ("data/train.tsv:12") for error messages."""

    source: Any
    target: Any
    where: str = ""


@dataclass
class EncodedExample:
    """One example as tensors.

    source: (S,) int64 token ids without bos/eos, or (S, F) float32 features; None for a language model
    target: (T,) int64 ids framed as [bos, ..., eos] for seq2seq and language models;
            () int64 class index for a classifier; (outputs,) float32 values for a regressor;
            None when the example has no target (inference)
    """

    source: Tensor | None
    target: Tensor | None


@dataclass
class EncodedBatch:
    """Several examples' token ids at once, what :meth:`Task.encode_batch` returns: each side's
    sequences concatenated into flat arrays (see :class:`seqkit.ragged.TokenArrays`), exactly the
    ids :meth:`Task.encode` gives one by one (targets framed as [bos, ..., eos])."""

    source: TokenArrays | None  # None for a language model
    target: TokenArrays


@dataclass
class Batch:
    """Examples collated right-padded with PAD (features with zeros).

    source:      (B, S) int64 or (B, S, F) float32; None for a language model
    source_mask: (B, S) bool, True on real positions; None for a language model
    target:      (B, T) int64 padded with PAD; (B,) int64 classes; (B, outputs) float32 values
    indices:     (B,) int64 positions of the examples in their split, to match predictions back
    """

    source: Tensor | None
    source_mask: Tensor | None
    target: Tensor
    indices: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(map_tensors(lambda t: t.to(device, non_blocking=True), value)
                       for value in (self.source, self.source_mask, self.target, self.indices)))

    def __len__(self) -> int:
        return self.target.size(0)


Direction = Literal["higher", "lower"]
"""Which way a metric improves: "higher" (accuracy, BLEU) or "lower" (loss, error rate)."""
DIRECTIONS: tuple[str, ...] = ("higher", "lower")


class Task(abc.ABC):
    """Where the data of one kind of problem comes from, how it becomes tensors and back, and how
    results are scored. A plugin registers a factory, ``register_tasks(register)`` calling
    ``register("name", factory, ConfigClass)``; ``factory(config)`` gets the ``[task]`` table as a
    ``ConfigClass`` instance and returns a Task. The conformance suite (``seqkit plugins check``)
    checks every point below.

    **What the core builds.** ``model_kind`` (a class attribute) tells the core what to build:
    ``seq2seq`` (encoder + decoder + vocabulary head), ``language_model`` (decoder only),
    ``classifier`` (encoder + pooling + class head) or ``regressor`` (encoder + pooling + linear
    head). ``model_shape()`` returns a :class:`seqkit.ModelShape` whose ``kind`` must equal
    ``model_kind`` (the core checks that they agree: ``model_kind`` is what the core reads before
    any data is seen, ``ModelShape.kind`` what the model is built from). The class count of a
    classifier goes in ``ModelShape.num_outputs``, not ``target_vocab``; see ModelShape for the
    fields each kind needs. A wrong shape is a one-line error naming the field when the model is
    built.

    **Life cycle.** ``fit(examples("train"))`` learns what depends on the training data
    (tokenizers, label set) once per run; ``state_dict()`` is saved with the model (JSON) and
    ``load_state_dict()`` restores it at load instead of ``fit``: a fresh task loaded from the
    state must encode and decode exactly as the fitted one. Then ``encode``/``decode``:
    ``decode`` of the encoded target gives the example's target back (up to the normalisation
    the task documents, such as lowercasing).

    **Randomness.** A task that draws or shuffles data takes its own ``seed`` option in its
    config and draws from its own generator (``numpy.random.default_rng(seed)``), never from the
    global torch/numpy/random state: the run's ``seed`` and the trainer move those, and the data
    must be the same in every run, process and resume.

    **Files and ``--data``.** A task that reads files names them in config options called
    ``train``, ``valid`` and ``test`` (``pathlib.Path | None``) and reads them in
    ``examples(split)``. ``seqkit eval --data FILE`` and ``seqkit score --data FILE`` replace
    ``test`` with FILE, build the task again from the changed config, ``load_state_dict`` the saved
    state and call ``examples("test")``: that is all a task does to support ``--data``. The
    optional ``sample_options(folder)`` lets the conformance suite build a small working task
    (see there); a task without it must build from its config defaults.

    **Metrics.** ``metrics()`` returns ``{name: float}``; ``metric_directions()`` declares, for
    every name ``metrics()`` may return, whether higher or lower is better. ``train.best_metric``
    picks the best checkpoint by it; a ``best_metric`` without a declared direction is refused
    before training. The core adds its own metrics: ``loss`` and ``ppl`` (lower is better),
    ``token_accuracy`` and ``accuracy`` (higher is better).
    """

    model_kind: ClassVar[str]

    @abc.abstractmethod
    def examples(self, split: str) -> Iterator[Example]:
        """The examples of ``split`` ("train", "valid", "test"), read lazily; a DataError names
        file:line of a malformed one."""

    def splits(self) -> list[str]:
        """The splits this task has data for (a file configured, a size above 0)."""
        return ["train", "valid", "test"]

    @abc.abstractmethod
    def fit(self, train: Iterable[Example]) -> None:
        """Learn vocabularies / label sets from the training examples."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """What ``fit`` learned, JSON-serialisable (a tokenizer as its JSON string, ...)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (after a JSON round trip: tuples become lists)."""

    @abc.abstractmethod
    def model_shape(self) -> Any:
        """A :class:`seqkit.ModelShape` of kind ``model_kind``: vocabulary sizes, feature width,
        number of classes or values (``num_outputs``). Called after ``fit``/``load_state_dict``."""

    @abc.abstractmethod
    def encode(self, example: Example) -> EncodedExample:
        """Tensors of one example, at full length (the core applies length limits); see
        :class:`EncodedExample` for the shape of each kind."""

    def encode_batch(self, examples: list[Example]) -> EncodedBatch | None:
        """Optional, for speed: the token ids :meth:`encode` gives each of ``examples``, computed
        together (a tokenizer's batch encoding, in Rust, on every core) and returned as flat arrays.
        Only for tasks whose sources (if any) and targets are token-id sequences (seq2seq,
        language model). None, the default, makes seqkit call :meth:`encode` per example; preparing
        the train split (``seqkit prepare``) uses this when it is defined, and ``seqkit plugins
        check`` holds it equal to ``encode``."""
        return None

    @abc.abstractmethod
    def decode(self, output: Tensor) -> Any:
        """A model output back to the target's raw form: token ids (T,) without bos/eos -> text;
        a class index () -> label; values (outputs,) -> list of floats. The result must be JSON
        (text, numbers, lists): distributed evaluation gathers it as JSON."""

    def encode_source(self, source: Any) -> Tensor:
        """The source tensor alone (generation from user input); unknown tokens become UNK."""
        return self.encode(Example(source, None)).source

    def token_strings(self, ids: list[int], side: Literal["source", "target"]) -> list[str]:
        """The vocabulary entry of each id on one side, for display (attention maps); a task
        without a vocabulary to show keeps the default, the ids as strings."""
        return [str(i) for i in ids]

    @abc.abstractmethod
    def metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        """Task metrics of decoded predictions against raw references (exact match as a
        fraction, BLEU and chrF through sacrebleu, accuracy, mean squared error, ...); every
        name must have a direction in ``metric_directions()``."""

    def metric_directions(self) -> dict[str, Direction]:
        """``{name: "higher" | "lower"}`` for every metric ``metrics()`` may return, e.g.
        ``{"bleu": "higher", "error_rate": "lower"}``. The trainer keeps the checkpoint with the
        best ``train.best_metric`` by this direction, and early stopping waits for it to improve.

        Declared by the task, not guessed by the core from the name: the core cannot know a
        plugin's names, and a guess ("error_rate" is not "loss", so higher must be better) kept
        the worst checkpoint. A method rather than a constant, so that a task whose metrics
        depend on its options can say so. The default declares none: a task that reports
        metrics overrides it. The core's own metrics (loss, ppl, token_accuracy, accuracy) need
        no declaration."""
        return {}

    @classmethod
    def sample_options(cls, folder: Path) -> dict[str, Any]:
        """Options for a small working instance of this task, for the conformance suite: write a
        few examples of each split you read from files under ``folder``, in your file format,
        and return the ``[task]`` options that read them, e.g. ``{"train": folder / "train.tsv",
        "valid": ..., "test": ...}`` (plus anything else a quick instance needs). The default
        ``{}`` means the config's defaults already give a working task (a synthetic task that
        draws its data from its seed)."""
        return {}


# -- device backends ----------------------------------------------------------------------------


class Backend(abc.ABC):
    """A kind of device. A plugin registers a factory, ``register_backends(register)`` calling
    ``register("name", factory)``; ``factory()`` takes no arguments and returns a Backend whose
    ``name`` equals the registered name. Building one must be cheap and must not fail on a machine
    without the device: ``is_available()`` says whether it can run here, and only then are the
    other methods called.

    ``priority`` orders the choice of ``auto``: the available backend with the highest priority
    wins (cpu 0, mps 50, cuda 100). ``distributed_backend`` names the torch.distributed backend
    (gloo, nccl). ``default_precision()`` must be one of ``supported_precisions()``; ``autocast``
    of each supported precision must run a matmul on ``device()``, and of any other precision must
    raise ValueError or BackendUnavailableError saying so. ``memory_stats()`` returns ints (bytes),
    ``peak_flops()`` a positive number or None. The conformance suite checks each point."""

    name: ClassVar[str]
    priority: ClassVar[int] = 0
    distributed_backend: ClassVar[str] = "gloo"

    @abc.abstractmethod
    def is_available(self) -> bool:
        """Whether this backend can run in this process."""

    @abc.abstractmethod
    def device(self, index: int | None = None) -> torch.device:
        """The torch device (``index`` picks one of several, e.g. the local rank)."""

    def use_device(self, local_rank: int) -> torch.device:
        """The device of the process with ``local_rank`` on this machine in a distributed run, made
        this process's current device where the backend has one (CUDA: ``cuda:local_rank``)."""
        return self.device(local_rank)

    @abc.abstractmethod
    def device_name(self) -> str:
        """A human-readable name of the device, e.g. "NVIDIA H100 80GB HBM3"."""

    @abc.abstractmethod
    def default_precision(self) -> Precision:
        """The precision "auto" resolves to on this device."""

    def supported_precisions(self) -> tuple[Precision, ...]:
        """Precisions this device can train in."""
        return ("fp32", "bf16", "fp16")

    def autocast(self, precision: Precision) -> contextlib.AbstractContextManager:
        """A context that runs eligible ops in ``precision`` (fp32: no autocast)."""
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device().type, dtype=DTYPES[precision])

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Wait for queued device work to finish (timing needs it)."""

    @abc.abstractmethod
    def memory_stats(self) -> dict[str, int]:
        """Memory in bytes: at least ``allocated`` and ``peak`` (since ``reset_peak_memory``)."""

    def reset_peak_memory(self) -> None:  # noqa: B027 - optional, most devices cannot
        """Start a new peak-memory measurement where the device allows it."""

    @abc.abstractmethod
    def peak_flops(self, precision: Precision) -> float | None:
        """Dense peak FLOP/s of this device in ``precision`` for MFU; None when unknown."""
