"""Tiny random MarianMT folders made locally with transformers and sentencepiece (nothing is
downloaded), laid out as Opus-MT's: source.spm, target.spm, vocab.json (</s> 0, <unk> 1, <pad>
last, decoding starts with <pad>), config.json, model.safetensors."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers", reason="pip install 'seqkit[hf]'")
spm = pytest.importorskip("sentencepiece", reason="pip install 'seqkit[hf]'")
pytest.importorskip("google.protobuf", reason="pip install 'seqkit[hf]'")

import torch  # noqa: E402

NUMBERS = Path(__file__).resolve().parent.parent / "examples" / "data" / "numbers.train.tsv"


def pairs(count: int = 2000, offset: int = 0) -> list[tuple[str, str]]:
    lines = NUMBERS.read_text(encoding="utf-8").splitlines()[offset: offset + count]
    return [tuple(line.split("\t")) for line in lines]


def _spm(lines: list[str], size: int) -> bytes:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=out, vocab_size=size,
                                   model_type="unigram", minloglevel=2, hard_vocab_limit=False)
    return out.getvalue()


def make_marian(folder: Path, activation: str = "gelu", seed: int = 0, d_model: int = 16,
                **config) -> Path:
    """A random MarianMT model with its tokenizer files in ``folder``; ``config`` overrides
    MarianConfig keys. Weights are drawn wide (init_std 0.3) so that greedy choices are clear."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer
    from transformers.utils import logging as hf_logging

    folder.mkdir(parents=True, exist_ok=True)
    rows = pairs()
    source, target = _spm([s for s, _ in rows], 60), _spm([t for _, t in rows], 60)
    (folder / "source.spm").write_bytes(source)
    (folder / "target.spm").write_bytes(target)
    pieces = []
    for data in (source, target):
        model = spm.SentencePieceProcessor(model_proto=data)
        pieces += [model.id_to_piece(i) for i in range(model.get_piece_size())
                   if not (model.is_control(i) or model.is_unknown(i))]
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pip install sacremoses"
        tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"),
                                    str(folder / "vocab.json"))
    tokenizer.save_pretrained(str(folder))
    size = len(vocab)
    options = dict(vocab_size=size, d_model=d_model, encoder_layers=2, decoder_layers=2,
                   encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                   decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=size - 1, eos_token_id=0,
                   decoder_start_token_id=size - 1, forced_eos_token_id=0, activation_function=activation,
                   scale_embedding=True, init_std=0.3)
    torch.manual_seed(seed)
    marian = MarianMTModel(MarianConfig(**{**options, **config}))
    hf_logging.disable_progress_bar()
    marian.save_pretrained(str(folder))
    return folder


def hf_generate(folder: Path, ids: list[int], max_len: int, beam: int = 1) -> list[int]:
    """MarianMT's output ids for source ``ids`` (Marian's numbering), as seqkit searches: <pad>
    never generated, at most ``max_len`` tokens before <eos>, beam scores without a length penalty.
    Returns the ids without the start token and <eos>."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig.from_pretrained(str(folder))
    marian = MarianMTModel.from_pretrained(str(folder)).float().eval()
    pad, eos = config.pad_token_id, config.eos_token_id
    with torch.inference_mode():
        out = marian.generate(torch.tensor([ids]), max_length=max_len + 2, num_beams=beam,
                              do_sample=False, length_penalty=0.0, early_stopping=False,
                              suppress_tokens=[pad], forced_eos_token_id=eos, bad_words_ids=None,
                              num_return_sequences=1)[0, 1:].tolist()
    return out[: out.index(eos)] if eos in out else [t for t in out if t != pad]
