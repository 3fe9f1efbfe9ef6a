"""The CTranslate2 baseline of ``seqkit bench --baseline ctranslate2``: seqkit's Transformer, with
its weights, as a CTranslate2 translator (float32 and int8, written by seqkit.export_ct2), timed on
the same random sources as seqkit's generation, beside seqkit's own int8 (``--precision int8``'s
dynamic quantization) on the CPU.

Each step decodes exactly L new tokens per row, as seqkit's generation step does: seqkit bans the
end of sequence before L tokens and forces it after, so it runs L + 1 decoder steps; CTranslate2
is given a minimum and maximum length of L + 1 (the same L + 1 decoder steps, no end of sequence
before). Both count B x L tokens.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from seqkit.bench.steps import Batch
from seqkit.errors import ConfigError

# implementation -> (weights, beam size); ratio against the seqkit implementation beside it
IMPLEMENTATIONS = {"ctranslate2": ("float32", 1), "ctranslate2-int8": ("int8", 1),
                   "ctranslate2-beam4": ("float32", 4), "ctranslate2-int8-beam4": ("int8", 4)}
RATIOS = {"ctranslate2": "seqkit", "ctranslate2-int8": "seqkit", "ctranslate2-beam4": "beam4",
          "ctranslate2-int8-beam4": "beam4", "seqkit-int8": "seqkit", "beam4-int8": "beam4"}
# seqkit's own int8 (seqkit.quantize), timed beside CTranslate2's: name -> the search it runs
SEQKIT_INT8 = {"seqkit-int8": "seqkit", "beam4-int8": "beam4"}


def seqkit_int8(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The same model quantized as ``--precision int8`` loads it, for each SEQKIT_INT8 search."""
    import copy

    from seqkit.quantize import quantize_int8

    quantized = copy.deepcopy(model).eval()
    quantize_int8(quantized)
    quantized.bench_parameters = sum(p.numel() for p in model.parameters())  # as fp32 counts them
    quantized.bench_flops = False  # torch's FLOP counter does not see quantized products
    return dict.fromkeys(SEQKIT_INT8, quantized)


def check_baseline(settings, configs: dict, manager) -> None:
    """One-line ConfigErrors before anything is built: generation only, Transformer models only,
    ctranslate2 installed."""
    from seqkit.export_ct2 import ACTIVATIONS
    from seqkit.exporters import require_extra
    from seqkit.marian import TRANSFORMER, TRANSFORMER_PLUGIN

    if set(settings.modes) != {"generate"}:
        raise ConfigError("--baseline ctranslate2: times generation only; use --mode generate")
    require_extra("ct2")
    for arch, config in configs.items():
        for part in ("encoder", "decoder"):
            component = getattr(config, part)
            registered = manager.get(part, component.name)
            if (registered.plugin, component.name) != (TRANSFORMER_PLUGIN, TRANSFORMER):
                raise ConfigError(f"--baseline ctranslate2: --arch {arch}: CTranslate2 runs the "
                                  f"{TRANSFORMER!r} {part} of {TRANSFORMER_PLUGIN} only")
            if component.options.activation not in ACTIVATIONS:
                raise ConfigError(f"--baseline ctranslate2: model.{part}.activation: CTranslate2 has no "
                                  f"{component.options.activation!r}")
        if not config.decoder.options.cross_attention:
            raise ConfigError("--baseline ctranslate2: model.decoder.cross_attention must be true")


class Translators:
    """The float32 and int8 translators of one seqkit model (loaded into memory, so the folders
    they were written to are gone once this returns)."""

    def __init__(self, model: torch.nn.Module, config, vocab: int, threads: int):
        import ctranslate2

        from seqkit.export_ct2 import Shape, build_spec, save_spec, vocabulary

        shape = Shape(config.d_model, config.encoder.options, config.decoder.options)
        tokens = vocabulary(None, vocab)
        self.tokens = tokens
        self.translators = {}
        with tempfile.TemporaryDirectory(prefix="seqkit-bench-ct2-") as tmp:
            for weights in ("float32", "int8"):
                folder = Path(tmp) / weights
                folder.mkdir()
                save_spec(build_spec(model.state_dict(), shape, tokens, tokens), folder, weights)
                self.translators[weights] = ctranslate2.Translator(
                    str(folder), device="cpu", compute_type=weights, inter_threads=1, intra_threads=threads)

    def implementations(self, parameters: int) -> dict[str, Search]:
        return {name: Search(self.translators[weights], self.tokens, beam, parameters)
                for name, (weights, beam) in IMPLEMENTATIONS.items()}


class Search:
    """One CTranslate2 implementation (weights, beam size) as the bench runner sees it."""

    def __init__(self, translator, tokens: list[str], beam: int, parameters: int):
        self.translator, self.tokens, self.beam, self.parameters = translator, tokens, beam, parameters

    def step(self, batch: Batch) -> Step:
        return Step(self, batch)


class Step:
    """translate_batch over the batch's sources: exactly L new tokens per row."""

    def __init__(self, search: Search, batch: Batch):
        self.search = search
        self.source = [[search.tokens[i] for i in row] for row in batch.source.tolist()]
        length = batch.source.shape[1]
        self.options = {"beam_size": search.beam, "max_decoding_length": length + 1,
                        "min_decoding_length": length + 1, "length_penalty": 0.0, "max_input_length": 0}
        self.tokens = batch.source.shape[0] * length

    def __call__(self) -> None:
        self.search.translator.translate_batch(self.source, **self.options)
