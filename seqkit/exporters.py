"""``seqkit export``: a trained run as another framework's model folder, verified before it lands.

One exporter per format (``EXPORTERS``: format -> module with ``export(model, folder, texts)``);
each writes into a temporary folder beside the destination, checks the written folder against
seqkit's own outputs, and only then renames it into place: a failed export leaves nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from seqkit import storage
from seqkit.errors import ConfigError, DataError, StorageError

EXPORTERS = {"hf": "seqkit.export_hf", "ctranslate2": "seqkit.export_ct2"}
EXTRAS = {"hf": ("transformers", "sentencepiece", "google.protobuf"), "ct2": ("ctranslate2",)}
FORMAT_EXTRA = {"hf": "hf", "ctranslate2": "ct2"}  # format -> the extra it needs
DEFAULT_CHECK = 32


@dataclass
class ExportResult:
    """What an export wrote and how it was verified: ``checked`` inputs decoded greedily by seqkit
    and by the exported model, all identical (else the export raised) unless the weights were
    quantized: then ``agreement`` is the share decoded identically and ``bleu`` (where the inputs
    came with references) holds {"seqkit", "export", "difference"}."""

    folder: Path
    format: str
    checked: int
    split: str | None
    files: list[str] = field(default_factory=list)
    quantization: str | None = None  # ctranslate2: float32, int8 or int8_float32
    agreement: float = 1.0
    bleu: dict | None = None


def require_extra(extra: str) -> None:
    """A ConfigError naming the pip command when a module of the ``seqkit[extra]`` extra is missing."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"{module} is not installed; this needs the {extra} extra: "
                              f"pip install 'seqkit[{extra}]'") from None


@contextlib.contextmanager
def quiet_transformers():
    """transformers' progress bars and notices off while seqkit drives it (library code never
    prints); the caller's settings come back after."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), not hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if not bars:
            hf_logging.enable_progress_bar()


def exporter(to: str):
    """The module exporting to format ``to``."""
    if to not in EXPORTERS:
        raise ConfigError(f"--to: unknown format {to!r}; formats: {', '.join(sorted(EXPORTERS))}")
    require_extra(FORMAT_EXTRA[to])
    return importlib.import_module(EXPORTERS[to])


def check_quantization(to: str, quantization: str | None) -> str | None:
    """The quantization an export of format ``to`` writes (ctranslate2: float32 by default); a
    ConfigError for one the format does not take."""
    if to != "ctranslate2":
        if quantization not in (None, "float32"):
            raise ConfigError(f"--quantization: the {to} export writes float32 weights; quantized "
                              "weights are a ctranslate2 option (--to ctranslate2)")
        return None
    from seqkit.export_ct2 import check_quantization as check

    quantization = quantization or "float32"
    check(quantization)
    return quantization


def sample_texts(model, check: int, split: str | None) -> tuple[list[str], str | None]:
    """Up to ``check`` source texts to verify an export on: from ``split``, else the run's test
    split, else its valid split. None of them configured: ([], None)."""
    texts, _, split = sample_examples(model, check, split)
    return texts, split


def sample_examples(model, check: int, split: str | None) -> tuple[list[str], list, str | None]:
    """``sample_texts`` with the examples' references (targets) beside the sources."""
    splits = [split] if split else [s for s in ("test", "valid") if s in model.task.splits()]
    if split and split not in model.task.splits():
        raise ConfigError(f"--split: the run has no {split!r} split (it has "
                          f"{', '.join(model.task.splits()) or 'none'})")
    for name in splits:
        examples = itertools.islice(model.task.examples(name), check)
        examples = [e for e in examples if isinstance(e.source, str)]
        if examples:
            return [e.source for e in examples], [e.target for e in examples], name
    return [], [], None


def check_destination(folder: Path) -> None:
    """An export goes to a new (or empty) folder: it never replaces files it did not make."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        what = "a folder that is not empty" if folder.is_dir() else "a file"
        raise StorageError(f"{folder}: is {what}; choose a new folder to export to")


def temporary_folder(folder: Path) -> Path:
    """A new empty folder ``.NAME.XXXXXXXX.tmp`` beside ``folder``."""
    storage.make_folder(folder.parent)
    try:
        return Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    except OSError as exc:
        raise StorageError(f"{folder.parent}: cannot create a folder: {exc.strerror}") from None


def move_into_place(tmp: Path, folder: Path) -> None:
    """Rename the finished ``tmp`` to ``folder`` (an empty ``folder`` is replaced), files fsynced."""
    mode = 0o666 & ~_umask()
    for path in tmp.iterdir():
        path.chmod(mode)  # transformers writes some files 0600, as mkdtemp makes the folder 0700
        with path.open("rb") as f:
            os.fsync(f.fileno())
    tmp.chmod(mode | 0o111)
    try:
        if folder.is_dir():
            folder.rmdir()  # empty: checked before the export started
        os.replace(tmp, folder)
    except OSError as exc:
        raise StorageError(f"{folder}: cannot move the export into place: {exc.strerror}") from None
    directory = os.open(folder.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_folder(tmp: Path) -> None:
    """Remove a temporary export folder this module made (nothing else)."""
    if storage.is_temporary(tmp):
        shutil.rmtree(tmp, ignore_errors=True)


def export(model, to: str, folder: Path, check: int = DEFAULT_CHECK, split: str | None = None,
           texts: list[str] | None = None, quantization: str | None = None) -> ExportResult:
    """Export a loaded ``model`` (seqkit.trained.Model) to ``folder`` in format ``to``, verified on
    ``texts`` or on up to ``check`` sources of the run's data (with their references, for the
    BLEU of quantized weights)."""
    module = exporter(to)
    quantization = check_quantization(to, quantization)
    folder = Path(folder)
    check_destination(folder)
    references = None
    if texts is None:
        texts, references, split = sample_examples(model, check, split)
    if not texts:
        raise DataError("no inputs to verify the export on: the run's config has no test or valid "
                        "data (give texts, or --check-file FILE with one source per line)")
    module.check_exportable(model)
    tmp = temporary_folder(folder)
    result = ExportResult(folder, to, 0, split, quantization=quantization)
    try:
        if to == "ctranslate2":
            result.files = module.export(model, tmp, quantization)
            check_result = module.verify(model, tmp, texts, quantization, references)
            result.checked, result.agreement, result.bleu = (check_result.checked, check_result.agreement,
                                                             check_result.bleu)
        else:
            with quiet_transformers():
                result.files = module.export(model, tmp)
                result.checked = module.verify(model, tmp, texts)
        move_into_place(tmp, folder)
    finally:
        remove_folder(tmp)
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
