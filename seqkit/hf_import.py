"""Import a local Hugging Face MarianMT folder as a seqkit run folder (``seqkit import hf DIR --out RUN``).

The folder needs config.json, model.safetensors (a pickled pytorch_model.bin is refused: seqkit
never unpickles) and a tokenizer: source.spm/target.spm with vocab.json (Opus-MT's files), or a
Unigram tokenizer.json. Nothing is downloaded. The run folder holds config.toml (a translation task
with no data files, the Transformer the weights fit) and best.safetensors, so ``seqkit generate``,
``eval --data`` and ``score`` work on it, and ``seqkit.train(config, init=RUN)`` fine-tunes from it.

Marian's vocabulary is renumbered into seqkit's layout (see seqkit.hf_tokenizer.marian_order) and
the residual stream reordered (see seqkit.marian); the import then checks, on sample text, that the
seqkit tokenizer gives Marian's ids and that seqkit and the Marian model decode them identically.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer

from seqkit import checkpoint as ckpt
from seqkit.config import load_config
from seqkit.errors import CheckpointError, ConfigError, DataError, ExportError
from seqkit.hf_tokenizer import (
    fast_tokenizer_vocab,
    marian_order,
    marian_tokenizer,
    read_json,
    read_vocab,
    renumbered,
)
from seqkit.interfaces import EOS, Example
from seqkit.marian import from_marian_state, seqkit_options
from seqkit.model import build_model, task_label, task_model_shape
from seqkit.run_folder import RunFolder, model_meta
from seqkit.tokenizer import Tokenizer
from seqkit.trained import build_task

TASK = "translation"


@dataclass
class ImportResult:
    """The run folder made, and what was checked: ``checked`` sample texts whose seqkit ids equal
    Marian's and whose greedy outputs equal Marian's."""

    folder: Path
    vocab_size: int
    checked: int


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (a local MarianMT folder; nothing is downloaded)")
    config = read_json(path, "missing; not a Hugging Face model folder", "a JSON config")
    if not isinstance(config, dict):
        raise DataError(f"{path}: not a JSON object")
    return config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / "model.safetensors"
    if not path.exists():
        if (folder / "pytorch_model.bin").exists():
            raise CheckpointError(f"{folder}: only pytorch_model.bin (a pickle, which seqkit never loads); "
                                  "convert it to model.safetensors first")
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None


def special_ids(config: dict, vocab: dict[str, int] | None, unk: int | None) -> dict[str, int]:
    """Marian's pad, eos, unk and decoder-start ids."""
    eos = config.get("eos_token_id", 0)
    eos = eos[0] if isinstance(eos, list) else eos
    pad = config.get("pad_token_id")
    if unk is None:
        unk = (vocab or {}).get("<unk>")
    if not isinstance(pad, int) or not isinstance(eos, int) or not isinstance(unk, int):
        raise ConfigError("config.json: needs pad_token_id and eos_token_id, and the vocabulary an <unk>")
    start = config.get("decoder_start_token_id")
    return {"pad": pad, "eos": eos, "unk": unk, "start": pad if start is None else start}


def tokenizers(folder: Path, config: dict) -> tuple[Tokenizer, Tokenizer, list[int], list[int], dict]:
    """The source and target tokenizers in seqkit's layout, the Marian id of each seqkit id on
    each side, and Marian's special ids."""
    if (folder / "source.spm").exists():
        vocab = read_vocab(folder / "vocab.json")
        target_vocab = (read_vocab(folder / "target_vocab.json") if (folder / "target_vocab.json").exists()
                        else vocab)
        ids = special_ids(config, vocab, None)
        source_order = marian_order(len(vocab), ids["pad"], ids["eos"], ids["unk"], ids["start"])
        target_order = marian_order(len(target_vocab), ids["pad"], ids["eos"], ids["unk"], ids["start"])
        target_spm = "target.spm" if (folder / "target.spm").exists() else "source.spm"
        source = marian_tokenizer(folder, "source.spm", vocab, source_order, ids)
        same = (target_vocab is vocab and
                (folder / target_spm).read_bytes() == (folder / "source.spm").read_bytes())
        target = source if same else marian_tokenizer(folder, target_spm, target_vocab, target_order, ids)
        return source, target, source_order, target_order, ids
    if (folder / "tokenizer.json").exists():
        vocab, backend = fast_tokenizer_vocab(folder / "tokenizer.json")
        ids = special_ids(config, vocab, backend.token_to_id("<unk>"))
        order = marian_order(backend.get_vocab_size(with_added_tokens=True), ids["pad"], ids["eos"],
                             ids["unk"], ids["start"])
        tokenizer = renumbered(backend, order, ids, folder / "tokenizer.json")
        return tokenizer, tokenizer, order, order, ids
    raise DataError(f"{folder}: no tokenizer (source.spm and vocab.json, or tokenizer.json)")


def appends_eos(folder: Path, eos: int) -> bool:
    """Whether the folder's tokenizer ends a source with </s> (``eos``, Marian's id): MarianTokenizer
    (SentencePiece files) always does; a tokenizer.json when its post-processor does."""
    if (folder / "source.spm").exists():
        return True
    backend = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    plain, framed = (backend.encode("a", add_special_tokens=special).ids for special in (False, True))
    return framed == [*plain, eos]


def run_config(marian: dict, source: Tokenizer, target: Tokenizer, manager, source_eos: bool) -> dict:
    """The seqkit config (as TOML data) of the imported model; ``source_eos``: the model was
    trained on sources that end with </s>."""
    options = seqkit_options(marian)
    shared = source is target
    task = {"name": TASK, "tokenizer": "bpe", "vocab_size": max(source.vocab_size, target.vocab_size),
            "shared_vocab": shared, "normalize": "none", "whitespace": "keep", "source_eos": source_eos}
    length = min(options.encoder["max_positions"], options.decoder["max_positions"])
    return {
        "task": task,
        "model": {"d_model": options.d_model, "tie_embeddings": options.tie_embeddings,
                  "share_embeddings": options.share_embeddings, "embedding_dropout": options.dropout,
                  "encoder": options.encoder, "decoder": options.decoder},
        "data": {"max_source_len": length, "max_target_len": min(length - 2, 256)},
    }


def import_marian(folder: Path, out: Path, manager, check: int = 8) -> ImportResult:
    """Make the run folder ``out`` from the MarianMT folder ``folder``."""
    folder, out = Path(folder), Path(out)
    marian = read_config(folder)
    seqkit_options(marian)  # a config seqkit cannot hold fails before anything heavy
    source, target, source_order, target_order, ids = tokenizers(folder, marian)
    weights = read_weights(folder)
    bias = weights.get("final_logits_bias")
    if bias is not None and bool(bias.flatten().ne(0).index_fill(0, torch.tensor([ids["pad"]]), False).any()):
        raise ConfigError(f"{folder / 'model.safetensors'}: final_logits_bias is not zero; seqkit's output "
                          "head has no bias")
    config = load_config(run_config(marian, source, target, manager, appends_eos(folder, ids["eos"])),
                         manager=manager)
    task = build_task(config, manager)
    task.load_state_dict({"tokenizer": source.to_json()} if source is target else
                         {"source_tokenizer": source.to_json(), "target_tokenizer": target.to_json()})
    model = build_model(config.model, task_model_shape(task, task_label(manager, TASK)), manager)
    try:
        state = from_marian_state(weights, config.model.d_model, source_order, target_order)
    except KeyError as exc:
        raise CheckpointError(f"{folder / 'model.safetensors'}: not MarianMT weights (no {exc})") from None
    ckpt.load_weights(model, state, folder / "model.safetensors")
    model.eval()
    checked = verify(folder, model, task, source, source_order, ids, marian, check)
    run = RunFolder(out)
    with run.lock():
        if run.has_history():
            raise CheckpointError(f"{out}: holds a run already; choose a new folder for --out")
        run.write_config(config, [f"imported from the MarianMT folder {folder.resolve()}"])
        ckpt.save_model(run.best, model, model_meta(config, task, manager, step=0, imported_from=str(folder)))
    return ImportResult(out, source.vocab_size, checked)


def sample_texts(tokenizer: Tokenizer, count: int, seed: int = 0) -> list[str]:
    """``count`` texts of vocabulary pieces (decoded), as a check that needs no data."""
    rng = random.Random(seed)
    ids = list(range(4, tokenizer.vocab_size))
    return [tokenizer.decode(rng.sample(ids, min(len(ids), 12))) for _ in range(count)]


def verify(folder: Path, model, task, source: Tokenizer, order: list[int], ids: dict, marian: dict,
           check: int) -> int:
    """Marian's own tokenizer (when sentencepiece files are there) and seqkit's give the same ids on
    sample texts, and the MarianMT model and seqkit's decode them identically (greedy, float32)."""
    if check <= 0:
        return 0
    from transformers import MarianMTModel

    from seqkit.exporters import quiet_transformers
    from seqkit.generate import greedy

    texts = [t for t in sample_texts(source, check) if t.strip()]
    seqkit_id: dict[int, int] = {}
    for i, marian_id in enumerate(order):  # <pad> keeps id 0 where <bos> is a second name for it
        seqkit_id.setdefault(marian_id, i)
    with quiet_transformers():
        reference = _marian_tokenizer(folder)
        hf = MarianMTModel.from_pretrained(str(folder), use_safetensors=True).float().eval()
    max_len = min(model.decoder.config.max_positions - 2, 32)
    for i, text in enumerate(texts):
        ours = source.encode(text)
        if reference is not None:
            theirs = [seqkit_id[t] for t in reference(text).input_ids if t != ids["eos"]]
            if theirs != ours:
                raise ExportError(f"import check failed: sample {i + 1} ({text!r}): seqkit's tokenizer gives "
                                f"{ours}, Marian's {theirs}")
        ours = task.encode(Example(text, None)).source.tolist()  # what seqkit decodes from (+ </s>)
        source_ids = torch.tensor([[order[t] for t in ours]])
        with torch.inference_mode(), quiet_transformers():
            out = hf.generate(source_ids, max_length=max_len + 2, num_beams=1, do_sample=False,
                              suppress_tokens=[ids["pad"], ids["start"]], forced_eos_token_id=ids["eos"],
                              decoder_start_token_id=ids["start"], eos_token_id=ids["eos"],
                              pad_token_id=ids["pad"], bad_words_ids=None)[0, 1:].tolist()
        out = [seqkit_id[t] for t in out]
        out = out[: out.index(EOS)] if EOS in out else out
        source_tensor = torch.tensor([ours])
        found = greedy(model, source_tensor, torch.ones_like(source_tensor, dtype=torch.bool), max_len)[0]
        if found != out:
            raise ExportError(f"import check failed: sample {i + 1}: seqkit decodes {found[:12]}, "
                            f"the MarianMT model {out[:12]}")
    return len(texts)


def _marian_tokenizer(folder: Path):
    """transformers' own MarianTokenizer of the folder, or None without SentencePiece files."""
    if not (folder / "source.spm").exists():
        return None
    from transformers import MarianTokenizer

    with warnings.catch_warnings():  # "Recommended: pip install sacremoses" (it does not tokenize)
        warnings.simplefilter("ignore")
        return MarianTokenizer.from_pretrained(str(folder))
