"""Export to a Hugging Face MarianMT folder (``seqkit export RUN --to hf DIR``).

The folder holds config.json, model.safetensors, generation_config.json and a fast tokenizer
(seqkit's own tokenizer JSON), so ``AutoModelForSeq2SeqLM.from_pretrained(DIR)`` and
``pipeline("translation", DIR)`` load it offline. Generation is configured as seqkit generates:
decoding starts with <bos>, stops at <eos>, never emits <pad> or <bos>.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from seqkit.errors import ConfigError, ExportError, GenerationError
from seqkit.hf_tokenizer import save_fast_tokenizer
from seqkit.interfaces import BOS, EOS, PAD
from seqkit.marian import marian_config, to_marian_state
from seqkit.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def check_exportable(model) -> dict:
    """The MarianConfig keys of ``model`` (a seqkit.trained.Model); a one-line ConfigError naming
    the first option Marian (or one HF tokenizer) cannot hold."""
    config = marian_config(model.config, model.meta.get("components") or {}, model.model.shape)
    tokenizer_of(model)
    return config


def source_eos(model) -> bool:
    """Whether the run's sources end with <eos> (``task.source_eos``, as an imported Marian's do)."""
    return bool(getattr(model.config.task.options, "source_eos", False))


def tokenizer_of(model) -> Tokenizer:
    """The run's one tokenizer (source and target alike)."""
    state = model.task.state_dict()
    if "tokenizer" in state:
        return Tokenizer.from_json(state["tokenizer"])
    if "source_tokenizer" in state and state["source_tokenizer"] == state.get("target_tokenizer"):
        return Tokenizer.from_json(state["source_tokenizer"])
    if "source_tokenizer" in state:
        raise ConfigError("task.shared_vocab: the run has a source and a target vocabulary; a Hugging Face "
                          "tokenizer holds one (train with task.shared_vocab = true)")
    raise ConfigError(f"task {model.config.task.name!r}: no text tokenizer to export")


def export(model, folder: Path) -> list[str]:
    """Write the MarianMT folder of ``model`` into ``folder`` (which exists, empty)."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    keys = check_exportable(model)
    marian = MarianMTModel(MarianConfig(**keys)).eval()
    shared = keys["share_encoder_decoder_embeddings"]
    state = to_marian_state(model.model.state_dict(), keys["d_model"], shared)
    missing, unexpected = marian.load_state_dict(state, strict=False)
    missing = [name for name in missing if "embed_positions" not in name]
    if missing or unexpected:  # a mapping bug, not a user error: say exactly what
        raise RuntimeError(f"MarianMT weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    max_len = model.config.data.max_target_len  # seqkit's default: new tokens before the forced <eos>
    marian.generation_config = GenerationConfig(
        decoder_start_token_id=BOS, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
        max_length=max_len + 2, num_beams=1, do_sample=False, suppress_tokens=[PAD, BOS],
        forced_eos_token_id=EOS)
    # (length_penalty = 0, seqkit's default, cannot be stored beside num_beams = 1: beam search in
    # transformers gives seqkit's outputs with generate(num_beams=K, length_penalty=0.0))
    marian.save_pretrained(str(folder))
    save_fast_tokenizer(tokenizer_of(model), folder, model.config.data.max_source_len, source_eos(model))
    return sorted(p.name for p in folder.iterdir())


def hf_greedy(folder: Path, texts: list[str], max_len: int) -> tuple[list[list[int]], list[list[int]]]:
    """The exported folder's source ids and greedy output ids (without start and <eos>) of
    ``texts``, loaded as a user loads it."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    marian = AutoModelForSeq2SeqLM.from_pretrained(str(folder)).float().eval()
    sources, outputs = [], []
    with torch.inference_mode():
        for text in texts:  # one at a time: no padding, so nothing but the model decides
            ids = tokenizer(text, return_tensors="pt").input_ids
            sources.append(ids[0].tolist())
            if ids.size(1) == 0:
                outputs.append([])
                continue
            # seqkit's max_len new tokens, then <eos> forced; HF's max_length counts the start token too
            out = marian.generate(ids, max_length=max_len + 2, num_beams=1, do_sample=False)[0, 1:].tolist()
            outputs.append(out[: out.index(EOS)] if EOS in out else out)
    return sources, outputs


def verify(model, folder: Path, texts: list[str]) -> int:
    """Decode ``texts`` greedily with seqkit and with the exported folder; a one-line error at
    the first input whose source ids or output ids differ. Returns how many were checked."""
    tokenizer = tokenizer_of(model)
    max_len = model.config.data.max_target_len
    sources, outputs = hf_greedy(folder, texts, max_len)
    try:
        found = model.generate(texts, scores=True, max_len=max_len)
    except GenerationError as exc:
        raise ConfigError(f"export check: seqkit cannot decode a sample input: {exc}") from None
    for i, (text, source, output, ours) in enumerate(zip(texts, sources, outputs, found, strict=True)):
        expected = tokenizer.encode(text) + [EOS] * source_eos(model)
        if source != expected:
            raise ExportError(f"export check failed: input {i + 1} ({_short(text)}): the exported tokenizer "
                              f"gives ids {_short(source)}, seqkit {_short(expected)}")
        if output != ours.tokens:
            raise ExportError(f"export check failed: input {i + 1} ({_short(text)}): the exported model "
                              f"decodes {_short(output)}, seqkit {_short(ours.tokens)}")
    log.info("export check: %d inputs decoded identically", len(texts))
    return len(texts)


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
