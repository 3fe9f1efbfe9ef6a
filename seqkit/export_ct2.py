"""Export to a CTranslate2 model folder (``seqkit export RUN --to ctranslate2 DIR``).

The CTranslate2 specification is written from seqkit's own weights, not through a converted
MarianMT folder: CTranslate2's Transformer already fuses q, k, v as seqkit does, takes a position
table (seqkit's sinusoids, or its learned table, as they are) and both pre- and post-norm layers,
and holds separate source and target vocabularies; its Marian converter, by contrast, assumes
Marian's vocabulary layout (<pad> last, decoding from a zero vector), which is not seqkit's.

The folder holds model.bin, config.json and the vocabularies CTranslate2 reads, the run's tokenizer
(tokenizer.json, or source_tokenizer.json and target_tokenizer.json) for the ``tokenizers``
library, and a README.md with the few lines that translate with both.

Decoding as seqkit decodes (``translate_options``): start from <bos>, stop at <eos>, at most
``max_len`` new tokens, no minimum length (CTranslate2's default is one), no length penalty.
Greedy search suppresses <pad> and <bos>, as seqkit does; beam search does not, because
CTranslate2 removes a suppressed token before its log-softmax and seqkit after (the beam scores,
and so the beams, would differ slightly); a trained model does not put them among its candidates.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqkit.errors import ConfigError, ExportError, GenerationError
from seqkit.interfaces import BOS, EOS, PAD, SPECIAL_TOKENS, UNK
from seqkit.marian import transformer_parts
from seqkit.tokenizer import Tokenizer

log = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "int8", "int8_float32")
ACTIVATIONS = ("gelu", "relu", "silu")
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, which seqkit's layers use


def translate_options(max_len: int, beam: int = 1) -> dict:
    """translate_batch options that decode as seqkit's generate(max_len=max_len, beam=beam)."""
    options = {"beam_size": beam, "max_decoding_length": max_len, "min_decoding_length": 0,
               "length_penalty": 0.0}
    if beam == 1:
        options["suppress_sequences"] = [[SPECIAL_TOKENS[PAD]], [SPECIAL_TOKENS[BOS]]]
    return options


# -- what can be exported -----------------------------------------------------------------------


def check_exportable(model) -> None:
    """A one-line ConfigError naming the first option of ``model`` (a seqkit.trained.Model)
    CTranslate2's Transformer cannot hold."""
    transformer_parts(model.config, model.meta.get("components") or {}, model.model.shape, "CTranslate2",
                      ACTIVATIONS)
    tokenizers_of(model)


def tokenizers_of(model) -> tuple[Tokenizer, Tokenizer]:
    """The run's (source, target) tokenizers; one object twice when the vocabulary is shared."""
    state = model.task.state_dict()
    if "tokenizer" in state:
        shared = Tokenizer.from_json(state["tokenizer"])
        return shared, shared
    if "source_tokenizer" in state and "target_tokenizer" in state:
        source = Tokenizer.from_json(state["source_tokenizer"])
        if state["source_tokenizer"] == state["target_tokenizer"]:
            return source, source
        return source, Tokenizer.from_json(state["target_tokenizer"])
    raise ConfigError(f"task {model.config.task.name!r}: no text tokenizers to export")


def source_eos(model) -> bool:
    """Whether the run's sources end with <eos> (``task.source_eos``)."""
    return bool(getattr(model.config.task.options, "source_eos", False))


def tokenizer_files(model) -> dict[str, str]:
    """Side -> the file name its tokenizer is written to."""
    source, target = tokenizers_of(model)
    if source is target:
        return {"source": "tokenizer.json", "target": "tokenizer.json"}
    return {"source": "source_tokenizer.json", "target": "target_tokenizer.json"}


# -- the specification --------------------------------------------------------------------------


def vocabulary(tokenizer: Tokenizer | None, size: int) -> list[str]:
    """The token string of each id 0..size-1 (CTranslate2 looks tokens up by string): the
    tokenizer's, and ``<unused{i}>`` for ids past its vocabulary (or all but the specials when
    there is no tokenizer, as in ``seqkit bench``)."""
    tokens = []
    for i in range(size):
        token = tokenizer.id_to_token(i) if tokenizer is not None else None
        if token is None:
            token = SPECIAL_TOKENS[i] if i < len(SPECIAL_TOKENS) else f"<unused{i}>"
        tokens.append(token)
    if len(set(tokens)) != len(tokens):
        raise ExportError("the vocabulary has a token string twice; CTranslate2 looks tokens up by string")
    return tokens


@dataclass
class Shape:
    """What the specification needs of a seqkit Transformer seq2seq model."""

    d_model: int
    encoder: object  # TransformerEncoderConfig
    decoder: object  # TransformerDecoderConfig


def build_spec(state: dict[str, torch.Tensor], shape: Shape, source_vocab: list[str],
               target_vocab: list[str]):
    """A ctranslate2 TransformerSpec holding the seqkit state dict ``state``."""
    from ctranslate2.specs import common_spec, transformer_spec

    activation = {"gelu": common_spec.Activation.GELU, "relu": common_spec.Activation.RELU,
                  "silu": common_spec.Activation.SWISH}
    # copies: quantizing the specification rewrites its arrays in place, which must not be the model's
    weights = {name: tensor.detach().float().cpu().numpy().copy() for name, tensor in state.items()}
    enc, dec = shape.encoder, shape.decoder
    encoder = transformer_spec.TransformerEncoderSpec(
        enc.layers, enc.heads, pre_norm=enc.norm == "pre", activation=activation[enc.activation])
    decoder = transformer_spec.TransformerDecoderSpec(
        dec.layers, dec.heads, pre_norm=dec.norm == "pre", activation=activation[dec.activation])

    def linear(spec, name: str) -> None:
        spec.weight = weights[f"{name}.weight"]
        if f"{name}.bias" in weights:
            spec.bias = weights[f"{name}.bias"]

    def norm(spec, name: str) -> None:
        spec.gamma, spec.beta = weights[f"{name}.weight"], weights[f"{name}.bias"]

    for part, spec, options in (("encoder", encoder, enc), ("decoder", decoder, dec)):
        spec.scale_embeddings = True  # seqkit's TokenEmbedding multiplies by sqrt(d_model)
        learned = f"{part}.positions.table.weight"
        spec.position_encodings.encodings = weights[learned] if learned in weights else \
            sinusoids(options.max_positions, shape.d_model)
        if options.norm == "pre":
            norm(spec.layer_norm, f"{part}.ln_f")
        for i, layer in enumerate(spec.layer):
            prefix = f"{part}.layers.{i}"
            linear(layer.self_attention.linear[0], f"{prefix}.attn.qkv")  # (3D, D): q, k, v
            linear(layer.self_attention.linear[1], f"{prefix}.attn.proj")
            norm(layer.self_attention.layer_norm, f"{prefix}.ln_1")
            if part == "decoder":
                linear(layer.attention.linear[0], f"{prefix}.cross.q")
                linear(layer.attention.linear[1], f"{prefix}.cross.kv")  # (2D, D): k, v
                linear(layer.attention.linear[2], f"{prefix}.cross.proj")
                norm(layer.attention.layer_norm, f"{prefix}.ln_2")
            linear(layer.ffn.linear_0, f"{prefix}.mlp.fc")
            linear(layer.ffn.linear_1, f"{prefix}.mlp.proj")
            norm(layer.ffn.layer_norm, f"{prefix}.ln_3" if part == "decoder" else f"{prefix}.ln_2")
    encoder.embeddings[0].weight = weights["source_embedding.weight"]
    decoder.embeddings.weight = weights.get("target_embedding.weight", weights["source_embedding.weight"])
    linear(decoder.projection, "head")
    spec = transformer_spec.TransformerSpec(encoder, decoder)
    spec.register_source_vocabulary(source_vocab)
    spec.register_target_vocabulary(target_vocab)
    config = spec.config
    config.unk_token, config.bos_token = SPECIAL_TOKENS[UNK], SPECIAL_TOKENS[BOS]
    config.eos_token, config.decoder_start_token = SPECIAL_TOKENS[EOS], SPECIAL_TOKENS[BOS]
    config.layer_norm_epsilon = LAYER_NORM_EPSILON
    return spec


def sinusoids(positions: int, d_model: int) -> np.ndarray:
    """seqkit's sinusoidal table (positions, d_model): sin and cos interleaved, frequencies
    1 / 10000^(2i / D), computed in float32 as seqkit computes it."""
    position = torch.arange(0, positions, dtype=torch.float32)
    exponent = torch.arange(0, d_model, 2, dtype=torch.float32)
    angle = position[:, None] * torch.exp(exponent * (-math.log(10000.0) / d_model))[None, :]
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)[:, :d_model].numpy()


def save_spec(spec, folder: Path, quantization: str) -> None:
    """Validate, quantize and write ``spec`` into ``folder`` (which exists)."""
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(folder))


# -- export and verification --------------------------------------------------------------------


def check_quantization(quantization: str) -> None:
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization: unknown {quantization!r}; CTranslate2 on this path takes "
                          f"{', '.join(QUANTIZATIONS)}")


def export(model, folder: Path, quantization: str = "float32") -> list[str]:
    """Write the CTranslate2 folder of ``model`` into ``folder`` (which exists, empty)."""
    check_quantization(quantization)
    check_exportable(model)
    source, target = tokenizers_of(model)
    config = model.config.model
    shape = Shape(config.d_model, config.encoder.options, config.decoder.options)
    spec = build_spec(model.model.state_dict(), shape, vocabulary(source, model.model.shape.source_vocab),
                      vocabulary(target, model.model.shape.target_vocab))
    save_spec(spec, folder, quantization)
    files = tokenizer_files(model)
    _backend(source, source_eos(model)).save(str(folder / files["source"]))
    if target is not source:
        _backend(target, False).save(str(folder / files["target"]))
    (folder / "README.md").write_text(readme(model, quantization), encoding="utf-8")
    return sorted(p.name for p in folder.iterdir())


def _backend(tokenizer: Tokenizer, append_eos: bool):
    """The ``tokenizers`` Tokenizer a user loads: seqkit's JSON, with <eos> appended to what it
    encodes when the run's sources end with it."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import processors

    backend = HFTokenizer.from_str(tokenizer.to_json())
    if append_eos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"$A {SPECIAL_TOKENS[EOS]}", special_tokens=[(SPECIAL_TOKENS[EOS], EOS)])
    return backend


def readme(model, quantization: str) -> str:
    """README.md of the exported folder: translating with ctranslate2 and tokenizers."""
    files = tokenizer_files(model)
    max_len, max_source = model.config.data.max_target_len, model.config.data.max_source_len
    options = translate_options(max_len)
    shown = "".join(f",\n    {k}={v!r}" for k, v in options.items())
    loads = (f'tokenizer = Tokenizer.from_file(f"{{folder}}/{files["source"]}")' if files["source"] ==
             files["target"] else
             f'source_tokenizer = Tokenizer.from_file(f"{{folder}}/{files["source"]}")\n'
             f'tokenizer = Tokenizer.from_file(f"{{folder}}/{files["target"]}")')
    encode = "tokenizer" if files["source"] == files["target"] else "source_tokenizer"
    return f"""# A seqkit model for CTranslate2

Exported by `seqkit export --to ctranslate2` (weights: {quantization}). Translate with
`pip install ctranslate2 tokenizers`:

```python
import ctranslate2
from tokenizers import Tokenizer

folder = "."  # this folder
{loads}
translator = ctranslate2.Translator(folder, device="cpu")
texts = ["a sentence to translate"]
tokens = [{encode}.encode(text).tokens for text in texts]
results = translator.translate_batch(tokens, max_input_length={max_source}{shown})
print([tokenizer.decode([tokenizer.token_to_id(t) for t in r.hypotheses[0]]) for r in results])
```

These options decode as `seqkit generate` does (greedy search; at most {max_len} new tokens).
For beam search pass `beam_size=4` and leave out `suppress_sequences`; `length_penalty=0.0`
is seqkit's default.
"""


@dataclass
class Check:
    """How the exported model decoded the sample inputs against seqkit."""

    checked: int
    agreement: float  # share of inputs decoded identically
    bleu: dict | None = None  # {"seqkit", "export", "difference"} where references were given


def verify(model, folder: Path, texts: list[str], quantization: str = "float32",
           references: list[str] | None = None) -> Check:
    """Decode ``texts`` greedily with seqkit and with the exported folder (loaded as a user loads
    it). Source ids must agree; so must every output with float32 weights (else a one-line
    ExportError naming the input). Quantized weights report the agreement and, with
    ``references``, the BLEU of both."""
    files = tokenizer_files(model)
    max_len = model.config.data.max_target_len
    source_tokenizer, _ = tokenizers_of(model)
    sources, outputs = ct2_greedy(folder, files, texts, max_len, model.config.data.max_source_len)
    try:
        found = model.generate(texts, scores=True, max_len=max_len)
    except GenerationError as exc:
        raise ConfigError(f"export check: seqkit cannot decode a sample input: {exc}") from None
    same = 0
    for i, (text, source, output, ours) in enumerate(zip(texts, sources, outputs, found, strict=True)):
        expected = source_tokenizer.encode(text) + [EOS] * source_eos(model)
        if source != expected:
            raise ExportError(f"export check failed: input {i + 1} ({_short(text)}): the exported tokenizer "
                              f"gives ids {_short(source)}, seqkit {_short(expected)}")
        if output == ours.tokens:
            same += 1
        elif quantization == "float32":
            raise ExportError(f"export check failed: input {i + 1} ({_short(text)}): the exported model "
                              f"decodes {_short(output)}, seqkit {_short(ours.tokens)}")
    check = Check(len(texts), same / len(texts) if texts else 1.0)
    if references is not None and any(r is not None for r in references):
        ours_text = [g.text for g in found]
        theirs = [model.task.decode(torch.tensor(ids, dtype=torch.long)) for ids in outputs]
        seqkit_bleu = model.task.metrics(ours_text, references).get("bleu")
        export_bleu = model.task.metrics(theirs, references).get("bleu")
        if seqkit_bleu is not None and export_bleu is not None:
            check.bleu = {"seqkit": seqkit_bleu, "export": export_bleu,
                          "difference": export_bleu - seqkit_bleu}
    log.info("export check: %d of %d inputs decoded identically", same, len(texts))
    return check


def ct2_greedy(folder: Path, files: dict[str, str], texts: list[str], max_len: int,
               max_source_len: int) -> tuple[list[list[int]], list[list[int]]]:
    """The exported folder's source ids and greedy output ids of ``texts``, as the folder's
    README decodes them."""
    import ctranslate2
    from tokenizers import Tokenizer as HFTokenizer

    source_tokenizer = HFTokenizer.from_file(str(folder / files["source"]))
    target_ids = {token: i for i, token in enumerate(_target_vocabulary(folder))}
    translator = ctranslate2.Translator(str(folder), device="cpu", inter_threads=1,
                                        intra_threads=torch.get_num_threads())
    encodings = [source_tokenizer.encode(text) for text in texts]
    sources = [e.ids for e in encodings]
    rows = [i for i, e in enumerate(encodings) if e.tokens]  # an empty source decodes to nothing
    outputs: list[list[int]] = [[] for _ in texts]
    if rows:
        results = translator.translate_batch([encodings[i].tokens for i in rows],
                                             max_input_length=max_source_len, **translate_options(max_len))
        for i, result in zip(rows, results, strict=True):
            outputs[i] = [target_ids[token] for token in result.hypotheses[0]]
    return sources, outputs


def _target_vocabulary(folder: Path) -> list[str]:
    """The target vocabulary CTranslate2 wrote (shared_vocabulary.json, else target_vocabulary.json)."""
    for name in ("shared_vocabulary.json", "target_vocabulary.json"):
        path = folder / name
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
    raise ExportError(f"{folder}: CTranslate2 wrote no target vocabulary")


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
