"""Tokenizers across the seqkit / Hugging Face border.

Out: a seqkit tokenizer is already an HF ``tokenizers`` JSON; ``save_fast_tokenizer`` wraps it as a
``PreTrainedTokenizerFast`` folder (tokenizer.json, tokenizer_config.json, special_tokens_map.json)
that ``AutoTokenizer`` and ``pipeline`` load.

In: a MarianMT folder's SentencePiece models (source.spm, target.spm) and vocab.json, or its
tokenizer.json, become seqkit tokenizers: a ``tokenizers`` Unigram model that segments as the
SentencePiece model does (its pieces and scores, its normalisation rules) with the ids of vocab.json,
renumbered into seqkit's layout (``marian_order``): <pad> <bos> <eos> <unk> at 0..3, the rest in
Marian's order. Marian has no <bos>: it starts decoding with <pad>, so <bos> is a second name for
that row. Each Marian piece is one seqkit token; Marian's </s> is seqkit's <eos>.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.models import Unigram

from seqkit.errors import DataError
from seqkit.interfaces import EOS, SPECIAL_TOKENS
from seqkit.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# Scores of vocabulary entries the side's SentencePiece model does not have (the other language's
# pieces): never chosen over its own pieces. A character SentencePiece does not know comes out as
# itself and Marian looks that string up in vocab.json, so a one-character entry may still be used
# where nothing else covers the text; a longer one never.
UNKNOWN_CHARACTER, NEVER = -1e6, -1e9


# -- out ----------------------------------------------------------------------------------------


def save_fast_tokenizer(tokenizer: Tokenizer, folder: Path, max_length: int,
                        source_eos: bool = False) -> None:
    """``tokenizer`` as a transformers fast-tokenizer folder; it encodes as seqkit encodes a source
    (no <bos> added; <eos> at the end with ``source_eos``, as the task's option) and decodes as
    seqkit decodes (special tokens skipped, no clean-up)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = HFTokenizer.from_str(tokenizer.to_json())
    if source_eos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"$A {SPECIAL_TOKENS[EOS]}", special_tokens=[(SPECIAL_TOKENS[EOS], EOS)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[1], eos_token=SPECIAL_TOKENS[2],
        unk_token=SPECIAL_TOKENS[3], clean_up_tokenization_spaces=False, model_max_length=max_length)
    fast.save_pretrained(str(folder))
    # the class name every transformers version knows (5.x writes its own new name, 4.x cannot load it)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("backend", None)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


# -- in -----------------------------------------------------------------------------------------


def marian_order(vocab_size: int, pad: int, eos: int, unk: int, start: int) -> list[int]:
    """For each seqkit id, the Marian id whose embedding and output rows it takes (one more id than
    Marian has when decoding starts with <pad>, as in Opus-MT; as many when it has a start token of
    its own, as in a folder seqkit exported)."""
    return [pad, start, eos, unk, *(i for i in range(vocab_size) if i not in (pad, eos, unk, start))]


def marian_tokenizer(folder: Path, spm_name: str, vocab: dict[str, int], order: list[int],
                     ids: dict[str, int]) -> Tokenizer:
    """A seqkit tokenizer for one side of a Marian folder: its SentencePiece model ``spm_name``
    segments, ``vocab`` (vocab.json: piece -> Marian id) numbers, ``order`` renumbers. ``ids`` holds
    Marian's pad, eos and unk ids."""
    proto = _spm_proto(folder / spm_name)
    if proto.trainer_spec.byte_fallback:
        raise DataError(f"{folder / spm_name}: SentencePiece byte fallback is not supported")
    scores = {}
    for piece in proto.pieces:
        if piece.type == 1:  # normal
            scores[piece.piece] = piece.score
        elif piece.type == 4:  # user defined: always one piece
            scores[piece.piece] = 0.0
    by_id = {i: piece for piece, i in vocab.items()}
    renamed = {ids["pad"]: SPECIAL_TOKENS[0], ids["eos"]: SPECIAL_TOKENS[2], ids["unk"]: SPECIAL_TOKENS[3]}
    entries = [(SPECIAL_TOKENS[0], 0.0), (SPECIAL_TOKENS[1], 0.0), (SPECIAL_TOKENS[2], 0.0),
               (SPECIAL_TOKENS[3], 0.0)]
    for marian_id in order[4:]:
        piece = renamed.get(marian_id, by_id[marian_id])
        entries.append((piece, scores.get(piece, UNKNOWN_CHARACTER if len(piece) == 1 else NEVER)))
    missing = [p for p in scores if p not in vocab]
    if missing:
        log.warning("%s: %d SentencePiece pieces are not in the vocabulary (as with Marian's own "
                    "tokenizer, text they would cover is segmented without them)", folder / spm_name,
                    len(missing))
    backend = HFTokenizer(Unigram(entries, unk_id=3, byte_fallback=False))
    spec = proto.normalizer_spec
    steps = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if steps:
        backend.normalizer = normalizers.Sequence(steps)
    # spaces become "▁" in the pre-tokenizer, not the normalizer: seqkit scores references through
    # the normalizer, which must leave text readable
    backend.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="always" if spec.add_dummy_prefix else "never", split=False)
    backend.decoder = decoders.Metaspace(
        replacement="▁", prepend_scheme="always" if spec.add_dummy_prefix else "never", split=False)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    codes = [piece for piece, _ in entries if piece.startswith(">>") and piece.endswith("<<")]
    if codes:  # target-language codes (">>fra<<") are whole tokens, as Marian's tokenizer splits them off
        backend.add_tokens([AddedToken(code, special=False, normalized=False) for code in codes])
    return Tokenizer(backend, "word")


def _spm_proto(path: Path):
    from transformers.convert_slow_tokenizer import import_protobuf

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such SentencePiece model") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    proto = import_protobuf().ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise DataError(f"{path}: not a SentencePiece model: {exc}") from None
    if proto.trainer_spec.model_type not in (0, 1):  # 0 unset, 1 unigram
        raise DataError(f"{path}: a SentencePiece model of type {proto.trainer_spec.model_type} "
                        "(only unigram models are supported)")
    return proto


def read_json(path: Path, missing: str, what: str):
    """The JSON in ``path``; a DataError naming it when it is ``missing`` or not ``what``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not {what}: {str(exc).splitlines()[0]}") from None


def read_vocab(path: Path) -> dict[str, int]:
    """vocab.json: piece -> id, ids 0..N-1 each once."""
    vocab = read_json(path, "no such vocabulary file", "a JSON vocabulary")
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise DataError(f"{path}: not a vocabulary (piece -> id, ids 0..N-1 each once)")
    return vocab


def fast_tokenizer_vocab(path: Path) -> tuple[dict[str, int], HFTokenizer]:
    """tokenizer.json of a Marian folder: its vocabulary (piece -> id) and the tokenizer."""
    try:
        backend = HFTokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception
        raise DataError(f"{path}: not a tokenizer.json: {str(exc).splitlines()[0]}") from None
    return backend.get_vocab(with_added_tokens=True), backend


def renumbered(backend: HFTokenizer, order: list[int], ids: dict[str, int], path: Path) -> Tokenizer:
    """A fast tokenizer (Unigram, BPE or word level) numbered as Marian numbers as a seqkit tokenizer
    in seqkit's order."""
    data = json.loads(backend.to_str())
    kind = data["model"]["type"]
    if kind not in ("Unigram", "BPE", "WordLevel"):
        raise DataError(f"{path}: a {kind} tokenizer; seqkit imports Unigram, BPE and word-level ones")
    renamed = {ids["pad"]: SPECIAL_TOKENS[0], ids["eos"]: SPECIAL_TOKENS[2], ids["unk"]: SPECIAL_TOKENS[3]}
    start_is_pad = ids["start"] == ids["pad"]
    if not start_is_pad:
        renamed[ids["start"]] = SPECIAL_TOKENS[1]
    new_id: dict[int, int] = {}
    for seqkit_id, marian_id in enumerate(order):
        new_id.setdefault(marian_id, seqkit_id)
    if kind == "Unigram":
        pieces = data["model"]["vocab"]
        data["model"]["vocab"] = [[SPECIAL_TOKENS[1], 0.0] if i == 1 and start_is_pad else
                                  [renamed.get(m, pieces[m][0]), 0.0 if m in renamed else pieces[m][1]]
                                  for i, m in enumerate(order)]
        data["model"].update(unk_id=3, byte_fallback=False)
    else:
        by_id = {i: token for token, i in data["model"]["vocab"].items()}
        vocab = {renamed.get(m, by_id[m]): new_id[m] for m in new_id}
        data["model"]["vocab"] = {**vocab, **({SPECIAL_TOKENS[1]: 1} if start_is_pad else {})}
        data["model"]["unk_token"] = SPECIAL_TOKENS[3]
    added = [{**token, "id": new_id[token["id"]], "content": renamed.get(token["id"], token["content"])}
             for token in data.get("added_tokens") or []]
    if start_is_pad:
        added.append({"id": 1, "content": SPECIAL_TOKENS[1], "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    data["added_tokens"] = sorted(added, key=lambda token: token["id"])
    data["post_processor"] = None  # seqkit's tasks frame sequences themselves
    return Tokenizer.from_json(json.dumps(data))
