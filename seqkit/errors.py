"""seqkit's exception types; the CLI shows a SeqkitError as one line on stderr, exit status 2."""

from __future__ import annotations


class SeqkitError(Exception):
    """Base class of every error seqkit raises on purpose (bad input, bad config, bad plugin)."""


class ConfigError(SeqkitError, ValueError):
    """A configuration is invalid; the message names the file, line and key path where known.

    A plugin factory that rejects one of its options raises ``ConfigError(message, key="heads")``;
    the core then names the whole key path (``model.encoder.heads: message``).
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class PluginError(SeqkitError):
    """A plugin failed to load, register or validate; the message names the plugin."""


class RegistryError(SeqkitError, KeyError):
    """A name was looked up in the registry and not found; the message lists what is available."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(SeqkitError):
    """A data file is missing, empty or malformed; the message names file:line."""


class CheckpointError(SeqkitError):
    """A checkpoint is missing, corrupt, too new, or needs a plugin that is not installed."""


class BackendUnavailableError(SeqkitError):
    """A device backend was asked for that cannot run here."""


class ExportError(SeqkitError):
    """An exported (or imported) model does not do what seqkit's does: its tokenizer gives other
    ids, or greedy decoding gives other tokens, for a sample input named in the message."""


class GenerationError(SeqkitError):
    """Generation cannot satisfy its constraints (``min_len`` against ``no_repeat_ngram``) for an
    input; ``row`` is the input's row in the batch searched, when known."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


class PluginCodeError(PluginError):
    """Code of a plugin raised an exception of its own (not a SeqkitError), or broke the contract
    (a cache that is not batch-first); the message names the plugin, the component's kind and name,
    and the original exception, which is chained as ``__cause__``."""


class StorageError(SeqkitError):
    """A file of a run could not be written or removed (disk full, read-only, permissions); the
    message names the file. Files written before it are intact."""


class RunFolderError(SeqkitError):
    """A run folder cannot be used as asked: in use by another run, not a seqkit run folder, trained
    with another config, or holding a saved run with no readable checkpoint."""


class TrainingError(SeqkitError):
    """Training cannot go on: the loss, the weights or an evaluation became NaN or infinite (the
    message names the last good checkpoint)."""


class DistributedError(SeqkitError):
    """The processes of a distributed run cannot start or disagree."""
