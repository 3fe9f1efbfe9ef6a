"""Model composition: embeddings in, a registered encoder and/or decoder, an output head out.

Four shapes of model, chosen by the task's ``model_kind``:
  seq2seq         source embedding (or feature projection) -> encoder -> decoder -> vocabulary head
  language_model  target embedding -> decoder (enc=None) -> vocabulary head
  classifier      source embedding (or projection) -> encoder -> pooling -> class head
  regressor       source embedding (or projection) -> encoder -> pooling -> linear head
Embeddings live here, not in architectures, so any encoder composes with any decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqkit.blame import exception_line
from seqkit.config import Component, ModelConfig
from seqkit.contracts import CACHE_BATCH, check_cache
from seqkit.errors import ConfigError, PluginCodeError, PluginError, SeqkitError
from seqkit.interfaces import MODEL_KINDS, Cache, Decoder, Encoder, EncoderOutput
from seqkit.packing import release
from seqkit.plugins import PluginManager, Registration


@dataclass(frozen=True)
class ModelShape:
    """What the data decides: vocabulary sizes, feature width, number of outputs. A task's
    ``model_shape()`` returns one; ``kind`` must equal the task's ``model_kind``.

    Fields each kind needs (others are ignored; leave them None):
      seq2seq         source_vocab or source_features, target_vocab
      language_model  target_vocab
      classifier      source_vocab or source_features, num_outputs = the number of classes (>= 2)
      regressor       source_vocab or source_features, num_outputs = values per example (>= 1)
    Vocabulary sizes count the 4 special tokens (ids 0-3: pad, bos, eos, unk).
    """

    kind: str
    source_vocab: int | None = None  # token sources; None with source_features
    source_features: int | None = None  # float feature sources (B, S, F)
    target_vocab: int | None = None  # seq2seq and language models
    num_outputs: int | None = None  # classes of a classifier, values of a regressor
    pad_id: int = 0

    def problem(self) -> str | None:
        """What is wrong with this shape for its kind, in a few words naming the field, or None."""
        if self.kind not in MODEL_KINDS:
            return f"kind {self.kind!r} is not one of {', '.join(MODEL_KINDS)}"
        for name in ("source_vocab", "source_features", "target_vocab", "num_outputs"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                return f"{name} must be a positive integer or None, got {value!r}"
        needs_encoder, needs_decoder = _NEEDS[self.kind]
        if needs_encoder and self.source_vocab is None and self.source_features is None:
            return (f"a {self.kind} needs source_vocab (token sources) or source_features (float "
                    "feature sources), got neither")
        if needs_decoder and self.target_vocab is None:
            return f"a {self.kind} needs target_vocab (the target vocabulary size), got None"
        if self.kind in ("classifier", "regressor"):
            least, what = ((2, "the number of classes") if self.kind == "classifier"
                           else (1, "values per example"))
            if self.num_outputs is None or self.num_outputs < least:
                hint = (f" (target_vocab={self.target_vocab!r} is for token targets: put the class "
                        f"count in num_outputs)" if self.target_vocab is not None else "")
                return (f"a {self.kind} needs num_outputs = {what} (at least {least}), "
                        f"got {self.num_outputs!r}{hint}")
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def task_model_shape(task, who: str) -> ModelShape:
    """``task.model_shape()``, checked: a ModelShape, of the task's ``model_kind``, with the fields
    its kind needs. ``who`` names the task ("plugin P, task 'x'"). Raises a one-line PluginError
    naming the field; call this, not ``task.model_shape()``, wherever a model is built."""
    shape = task.model_shape()
    if not isinstance(shape, ModelShape):
        raise PluginError(f"{who}: model_shape() returned a {type(shape).__name__}, not a "
                          "seqkit.ModelShape")
    model_kind = getattr(task, "model_kind", None)
    if model_kind != shape.kind:
        raise PluginError(f"{who}: model_shape().kind is {shape.kind!r} but the task's model_kind is "
                          f"{model_kind!r}; they must agree")
    problem = shape.problem()
    if problem is not None:
        raise PluginError(f"{who}: model_shape(): {problem}")
    return shape


def task_label(manager, name: str) -> str:
    """Who a task's errors name: "plugin P, task 'x'" for the task registered as ``name``."""
    reg = manager.get("task", name)
    return f"plugin {reg.plugin}, task {reg.name!r}"


class TokenEmbedding(nn.Module):
    """Token ids (B, T) -> vectors (B, T, D), scaled by sqrt(D) so they start at unit variance."""

    def __init__(self, vocab: int, d_model: int, pad_id: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab, d_model) * d_model**-0.5)
        self.scale = math.sqrt(d_model)
        self.pad_id = pad_id

    def forward(self, tokens: Tensor) -> Tensor:
        return nn.functional.embedding(tokens, self.weight) * self.scale


class FeatureProjection(nn.Module):
    """Float feature sequences (B, S, F) -> vectors (B, S, D)."""

    def __init__(self, features: int, d_model: int):
        super().__init__()
        self.proj = nn.Linear(features, d_model)

    def forward(self, features: Tensor) -> Tensor:
        return self.proj(features)


class SeqModel(nn.Module):
    """The composed model. ``encode`` and ``decode`` are the pieces generation uses;
    ``forward`` runs the whole model for training: logits (B, T, V) or (B, outputs)."""

    def __init__(self, shape: ModelShape, config: ModelConfig, encoder: Encoder | None,
                 decoder: Decoder | None):
        super().__init__()
        self.shape, self.kind, d = shape, shape.kind, config.d_model
        self.encoder, self.decoder = encoder, decoder
        self.pool = config.pool
        self.dropout = nn.Dropout(config.embedding_dropout)
        self.source_embedding: nn.Module | None = None
        self.target_embedding: TokenEmbedding | None = None
        if encoder is not None:
            self.source_embedding = (
                FeatureProjection(shape.source_features, d) if shape.source_features
                else TokenEmbedding(shape.source_vocab, d, shape.pad_id)
            )
        if decoder is not None:
            if config.share_embeddings and isinstance(self.source_embedding, TokenEmbedding):
                self.target_embedding = self.source_embedding
            else:
                self.target_embedding = TokenEmbedding(shape.target_vocab, d, shape.pad_id)
            self.head = nn.Linear(d, shape.target_vocab, bias=False)
            if config.tie_embeddings:
                self.head.weight = self.target_embedding.weight
        else:
            self.head = nn.Linear(d, shape.num_outputs)

    def train(self, mode: bool = True) -> SeqModel:
        """Also drops the decoding copies of weights (``seqkit.packing``): training changes them."""
        if mode:
            release(self)
        return super().train(mode)

    # -- pieces --------------------------------------------------------------------------------

    def encode(self, source: Tensor, mask: Tensor) -> EncoderOutput:
        """source (B, S) token ids or (B, S, F) features; mask (B, S) bool, True on real."""
        return self.encoder(self.dropout(self.source_embedding(source)), mask)

    def decode(self, target: Tensor, enc: EncoderOutput | None,
               cache: Cache | None = None) -> tuple[Tensor, Cache | None]:
        """target (B, T) token ids -> logits (B, T, V) and the updated cache."""
        hidden, cache = self.decoder(self.dropout(self.target_embedding(target)), enc, cache)
        return self.head(hidden), cache

    def pooled(self, enc: EncoderOutput) -> Tensor:
        """One vector per sequence (B, D) from the memory's real positions."""
        memory, mask = enc.memory, enc.mask
        if self.pool == "first":
            return memory[:, 0]
        if self.pool == "last":
            last = mask.long().sum(1).clamp(min=1) - 1  # (B,)
            return memory[torch.arange(memory.size(0), device=memory.device), last]
        weights = mask.unsqueeze(-1).to(memory.dtype)  # (B, S, 1)
        return (memory * weights).sum(1) / weights.sum(1).clamp(min=1)

    # -- whole model ---------------------------------------------------------------------------

    def forward(self, source: Tensor | None = None, source_mask: Tensor | None = None,
                target: Tensor | None = None) -> Tensor:
        if self.kind == "language_model":
            return self.decode(target, None)[0]
        enc = self.encode(source, source_mask)
        if self.kind == "seq2seq":
            return self.decode(target, enc)[0]
        return self.head(self.pooled(enc))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, tied weights counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


# -- building from config -----------------------------------------------------------------------

_NEEDS = {  # kind -> (needs encoder, needs decoder)
    "seq2seq": (True, True),
    "language_model": (False, True),
    "classifier": (True, False),
    "regressor": (True, False),
}


def build_model(config: ModelConfig, shape: ModelShape, manager: PluginManager) -> SeqModel:
    """The model described by ``[model]`` for data of ``shape``; errors name the key path."""
    if not isinstance(shape, ModelShape):
        raise PluginError(f"the task's model_shape() returned a {type(shape).__name__}, not a "
                          "seqkit.ModelShape")
    if shape.kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {shape.kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    problem = shape.problem()
    if problem is not None:  # without this, a wrong field is an opaque torch error further on
        raise PluginError(f"the task's model_shape(): {problem}")
    needs_encoder, needs_decoder = _NEEDS[shape.kind]
    for part, needed, component in (("encoder", needs_encoder, config.encoder),
                                    ("decoder", needs_decoder, config.decoder)):
        if needed and component is None:
            article = "an" if part == "encoder" else "a"
            raise ConfigError(f"model.{part}: a {shape.kind} model needs {article} {part}; "
                              f"available: {', '.join(manager.names(part)) or 'none'}")
        if not needed and component is not None:
            raise ConfigError(f"model.{part}: a {shape.kind} model has no {part}")
    if config.share_embeddings and (shape.source_features or shape.source_vocab != shape.target_vocab):
        raise ConfigError("model.share_embeddings: needs token sources and targets of one vocabulary")
    encoder = _build_part("encoder", config.encoder, config.d_model, manager, Encoder)
    decoder = _build_part("decoder", config.decoder, config.d_model, manager, Decoder)
    model = SeqModel(shape, config, encoder, decoder)
    _dry_run(model, shape, {part: _who(manager, part, component) for part, component in
                            (("encoder", config.encoder), ("decoder", config.decoder)) if component})
    return model


def check_components(config: ModelConfig, manager: PluginManager) -> None:
    """Run the encoder and decoder factories once, so that options a plugin rejects only when it
    builds (heads not dividing d_model, ...) are reported by `seqkit config check` too."""
    _build_part("encoder", config.encoder, config.d_model, manager, Encoder)
    _build_part("decoder", config.decoder, config.d_model, manager, Decoder)


def _build_part(part: str, component: Component | None, d_model: int, manager: PluginManager,
                expected: type) -> nn.Module | None:
    if component is None:
        return None
    registration = manager.get(part, component.name)
    try:
        module = registration.factory(component.options, d_model)
    except ConfigError as exc:
        key = f"model.{part}.{exc.key}" if exc.key else f"model.{part}"
        message = str(exc).removeprefix(f"{exc.key}: ") if exc.key else str(exc)
        raise ConfigError(f"{key}: {message}") from None
    except SeqkitError:
        raise
    except ValueError as exc:  # the documented way for a factory to reject its options
        raise ConfigError(f"model.{part}: {component.name}: {exc} "
                          f"(plugin {registration.plugin})") from None
    except Exception as exc:  # a bug in the plugin's code: name it, keep the original as cause
        raise PluginCodeError(f"model.{part}: {_describe(registration)}: "
                              f"{exception_line(exc)}") from exc
    if not isinstance(module, expected):
        raise ConfigError(f"model.{part}: plugin {registration.plugin} built a "
                          f"{type(module).__name__}, not a seqkit {expected.__name__}")
    manager.record_built(module, registration)
    return module


def _describe(registration: Registration) -> str:
    """e.g. "plugin seqkit_recurrent, decoder 'lstm'"."""
    return f"plugin {registration.plugin}, {registration.kind} {registration.name!r}"


def _who(manager: PluginManager, part: str, component: Component) -> str:
    return _describe(manager.get(part, component.name))


@torch.no_grad()
def _dry_run(model: SeqModel, shape: ModelShape, who: dict[str, str]) -> None:
    """Run two positions of a few rows through the model once, so that parts which cannot work
    together (a bridge with no recurrent state to take, mismatched sizes) fail now, naming the
    config key; then a few cached decoding steps with a reorder, so that a cache which is not
    batch-first fails now rather than at the first evaluation. ``who`` names each part's plugin."""
    was_training = model.training
    model.eval()
    batch, enc = CACHE_BATCH, None
    try:
        if model.encoder is not None:
            source = (torch.zeros(batch, 2, shape.source_features) if shape.source_features
                      else torch.full((batch, 2), shape.pad_id + 1 if shape.source_vocab > 1 else 0))
            mask = torch.ones(batch, 2, dtype=torch.bool)
            enc = _step("encoder", who, lambda: model.encode(source, mask))
        if model.decoder is not None:
            target = torch.zeros(batch, 2, dtype=torch.long)
            _step("decoder", who, lambda: model.decode(target, enc))
            check_cache(model, lambda ids: model.dropout(model.target_embedding(ids)), enc,
                        who["decoder"])
    finally:
        model.train(was_training)


def _step(part: str, who: dict[str, str], run):
    """``run()``; a ValueError or RuntimeError is a config problem (sizes, options that do not fit
    together), anything else a bug in the plugin's code."""
    try:
        return run()
    except SeqkitError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"model.{part}: {_first_line(exc)} ({who[part]})") from None
    except Exception as exc:
        raise PluginCodeError(f"model.{part}: {who[part]}: {exception_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
