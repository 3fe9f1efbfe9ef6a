"""The options of every component of the plugin, one dataclass each: ``[model.encoder]`` of
``conv``, ``[model.decoder]`` of ``glr``, ``[task]`` of ``vowels``.

This module imports no torch: seqkit imports it whenever it lists plugins or builds a config (the
dataclasses are registered with the factories), while the factories themselves are named as
"module:attribute" strings and imported only when a model or task is built.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seqkit import ConfigError

ACTIVATIONS = ("glu", "gelu")


@dataclass
class ConvEncoderConfig:
    """``[model.encoder]`` of the ``conv`` encoder."""

    layers: int = 4
    kernel_size: int = 5  # odd, so each output sits at the centre of its window
    activation: Literal["glu", "gelu"] = "glu"  # glu: the convolution makes 2*D channels, half gate
    dropout: float = 0.1  # on each convolution's output, in training only

    def __post_init__(self):
        check_conv_config(self)  # so `seqkit config check` reports a bad option with its file and line


def check_conv_config(config: ConvEncoderConfig) -> None:
    """Raise ConfigError naming the first invalid field."""
    if not _is_int(config.layers) or config.layers < 1:
        raise ConfigError(f"must be an integer >= 1, got {config.layers!r}", key="layers")
    if not _is_int(config.kernel_size) or config.kernel_size < 1 or config.kernel_size % 2 == 0:
        # an even window has no centre: "same" padding would shift outputs by half a position
        raise ConfigError(f"must be an odd integer >= 1, got {config.kernel_size!r}", key="kernel_size")
    if config.activation not in ACTIVATIONS:
        choices = ", ".join(repr(a) for a in ACTIVATIONS)
        raise ConfigError(f"must be one of {choices}, got {config.activation!r}", key="activation")
    dropout = config.dropout
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"must be a number in [0, 1), got {dropout!r}", key="dropout")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class GLRDecoderConfig:
    """``[model.decoder]`` of the ``glr`` decoder."""

    layers: int = 2
    dropout: float = 0.1  # on each layer's output, in training only

    def __post_init__(self):
        check_glr_config(self)  # so `seqkit config check` reports a bad option with its file and line


def check_glr_config(config: GLRDecoderConfig) -> None:
    """Raise ConfigError naming the first invalid field."""
    if isinstance(config.layers, bool) or not isinstance(config.layers, int) or config.layers < 1:
        raise ConfigError(f"must be an integer >= 1, got {config.layers!r}", key="layers")
    dropout = config.dropout
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"must be a number in [0, 1), got {dropout!r}", key="dropout")


@dataclass
class VowelsConfig:
    """``[task]`` of the ``vowels`` task: how many vowels has a word? Words come from the files
    ``train``/``valid``/``test`` (one ``word<TAB>count`` per line) when given, else they are drawn
    from ``seed`` (``*_size`` words of up to ``max_len`` letters each)."""

    train: Path | None = None  # word<TAB>count lines; None: draw train_size words from seed
    valid: Path | None = None
    test: Path | None = None  # `seqkit eval RUN --data FILE` replaces this one
    max_len: int = 6  # longest word: the classes are the counts 0 .. max_len
    train_size: int = 2000  # drawn words per split (used only where no file is given)
    valid_size: int = 200
    test_size: int = 200
    seed: int = 0  # the task's own seed: the same words in every run, whatever the run's seed

    def __post_init__(self):
        for key in ("max_len", "train_size", "valid_size", "test_size", "seed"):
            value = getattr(self, key)
            least = 1 if key == "max_len" else 0
            if not _is_int(value) or value < least:
                raise ConfigError(f"must be an integer >= {least}, got {value!r}", key=key)
