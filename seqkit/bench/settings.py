"""What `seqkit bench` times and what it reports: settings, rows and results (no torch here, so
the command line can read its defaults without importing torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

MODES = ("train", "encode", "generate")
# generate mode's implementations: search options of each
GENERATE = {"seqkit": {}, "recompute": {"use_cache": False}, "beam4": {"beam": 4}}
DEFAULT_ARCHITECTURES = ("rnn", "lstm", "gru", "transformer")
BASELINES = (None, "raw", "ctranslate2")


@dataclass
class BenchSettings:
    """What to time; the defaults finish in about a minute on two CPU cores."""

    architectures: tuple[str, ...] = DEFAULT_ARCHITECTURES  # "lstm", or "lstm+transformer"
    modes: tuple[str, ...] = ("train", "encode")
    lengths: tuple[int, ...] = (16, 32, 64, 128)  # source and target positions
    batch_size: int | None = None  # train: fixed rows per batch; None -> batch_tokens // length
    batch_tokens: int = 1024  # train: tokens per batch when batch_size is None
    generate_batches: tuple[int, ...] = (1,)  # generate: rows decoded together
    d_model: int = 128
    layers: int = 2  # of the encoder and of the decoder
    heads: int = 4  # components with a ``heads`` option
    ffn_size: int | None = None  # components with an ``ffn_size`` option; None -> theirs
    dropout: float = 0.1  # embedding dropout and the components' ``dropout``
    vocab: int = 1000
    overrides: tuple[str, ...] = ()  # --set model.decoder.attention=dot, ...
    backend: str = "auto"
    precision: str = "auto"
    compile: bool = False
    warmup: int = 2
    repeat: int = 7
    baseline: str | None = None  # None, "raw" or "ctranslate2" (generate mode, Transformer)
    threads: int | None = None  # torch.set_num_threads; None keeps torch's choice
    seed: int = 0


@dataclass
class BenchRow:
    """One measured (architecture, mode, length, implementation)."""

    architecture: str
    mode: str
    implementation: str  # seqkit | raw | recompute | beam4 | ctranslate2[-int8][-beam4]
    length: int | None
    batch_size: int | None
    status: str = "ok"  # ok | out of memory | not available: ... | error: ...
    tokens_per_s: float | None = None  # median over repetitions
    tokens_per_s_min: float | None = None
    tokens_per_s_max: float | None = None
    ms_per_step: float | None = None  # median
    ms_per_step_min: float | None = None
    ms_per_step_max: float | None = None
    peak_memory_bytes: int | None = None
    parameters: int | None = None
    flops_per_step: int | None = None
    mfu: float | None = None  # None where the backend has no peak FLOP/s table (CPUs)
    ratio_vs_baseline: float | None = None  # seqkit / baseline tokens/s (generate: see the module doc)
    repetitions: int = 0


ROW_FIELDS = tuple(f.name for f in fields(BenchRow))


@dataclass
class BenchResult:
    meta: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": [asdict(row) for row in self.rows]}


# -- building -----------------------------------------------------------------------------------
