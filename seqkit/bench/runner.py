"""Timing seqkit's models: training steps and encode latency, against raw PyTorch if asked.

An architecture ``lstm`` is the seq2seq model with an lstm encoder and an lstm decoder, built by
``seqkit.model.build_model`` from a config dict like any run; ``lstm+transformer`` pairs an lstm
encoder with a transformer decoder. Batches are synthetic random tokens of a fixed (B, L), source
and target both L long, no padding. Modes:

  train     forward, cross-entropy, backward, AdamW step; tokens/s counts target tokens
  encode    the encoder's forward at batch 1 in inference mode; tokens/s counts source tokens
  generate  seqkit.generate decoding exactly L new tokens (min_len = max_len = L) at each batch
            size of ``generate_batches``; tokens/s counts new tokens of the best hypotheses. Three
            implementations, interleaved: "seqkit" (greedy through the decoder cache), "recompute"
            (greedy recomputing the whole prefix every step; the "seqkit" row's ratio is
            cached / recompute tokens/s) and "beam4" (beam search, 4 beams; its ratio is
            beam4 / greedy tokens/s)

Each case runs ``warmup`` untimed steps, then ``repeat`` timed ones, each step bracketed by the
backend's synchronize; with a baseline, seqkit's and the baseline's steps alternate (ABBA ABBA...)
so drift on a shared machine hits both alike. Rows carry the median and min-max over repetitions.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import torch
from torch import nn

from seqkit.backends import get_backend, resolve_precision
from seqkit.bench.flops import count_flops, mfu
from seqkit.bench.settings import (
    BASELINES,
    GENERATE,
    MODES,
    BenchResult,
    BenchRow,
    BenchSettings,
)
from seqkit.bench.steps import (
    FIRST_TOKEN,
    Batch,
    GenerateStep,
    encode_step,
    is_oom,
    timed,
    train_step,
)
from seqkit.config import ModelConfig, load_config
from seqkit.errors import ConfigError, RegistryError
from seqkit.interfaces import Backend
from seqkit.model import ModelShape, SeqModel, build_model, count_parameters
from seqkit.plugins import PluginManager, make_plugin_manager


def split_architecture(arch: str, manager: PluginManager) -> tuple[str, str]:
    """``"lstm"`` -> ("lstm", "lstm"); ``"lstm+transformer"`` -> (encoder, decoder)."""
    encoder, _, decoder = arch.partition("+")
    decoder = decoder or encoder
    for kind, name in (("encoder", encoder), ("decoder", decoder)):
        if name not in manager.names(kind):
            available = ", ".join(manager.names(kind)) or "none"
            raise RegistryError(f"unknown architecture {arch!r}: no {kind} {name!r}; "
                                f"available {kind}s: {available}")
    return encoder, decoder


def model_config(arch: str, settings: BenchSettings, manager: PluginManager) -> ModelConfig:
    """The ``[model]`` of ``arch``: the shared shape options go to the components that have them."""
    encoder, decoder = split_architecture(arch, manager)
    shared = {"layers": settings.layers, "heads": settings.heads, "dropout": settings.dropout,
              "ffn_size": settings.ffn_size}
    tables = {}
    for kind, name in (("encoder", encoder), ("decoder", decoder)):
        config_class = manager.get(kind, name).config_class
        known = {f.name for f in fields(config_class)} if config_class else set()
        tables[kind] = {"name": name, **{k: v for k, v in shared.items()
                                         if k in known and v is not None}}
    data = {"model": {"d_model": settings.d_model, "embedding_dropout": settings.dropout, **tables}}
    overrides = [o if o.startswith("model.") else f"model.{o}" for o in settings.overrides]
    return load_config(data, overrides, manager).model


def build_seqkit(config: ModelConfig, settings: BenchSettings, manager: PluginManager) -> SeqModel:
    shape = ModelShape("seq2seq", source_vocab=settings.vocab, target_vocab=settings.vocab)
    return build_model(config, shape, manager)


@torch.no_grad()
def check_length(arch: str, model: nn.Module, length: int, device: torch.device) -> None:
    """ConfigError unless ``model`` takes sources and targets of ``length`` positions."""
    model.eval()
    tokens = torch.full((1, length), FIRST_TOKEN, device=device)
    mask = torch.ones(1, length, dtype=torch.bool, device=device)
    try:
        model(tokens, mask, tokens)
    except (ValueError, IndexError, RuntimeError) as exc:
        if is_oom(exc):
            return  # the length is fine, the device is small: the rows will say so
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--lengths: {arch} cannot take length {length}: {reason}") from None
    finally:
        model.train()


# -- running ------------------------------------------------------------------------------------


def run_bench(settings: BenchSettings, manager: PluginManager | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> BenchResult:
    """Time every (architecture, mode, length) of ``settings``; ``progress(done, total, label)``
    is called before each case. Bad input raises before anything is timed: an unknown
    architecture (RegistryError), a length a model cannot take (ConfigError), a backend that is
    not here (BackendUnavailableError). Out of memory at one size is that row's status."""
    from seqkit.bench.raw import build_raw_model, copy_from_seqkit

    manager = manager or make_plugin_manager()
    _check_settings(settings)
    backend = get_backend(settings.backend, manager)
    precision = resolve_precision(backend, settings.precision)
    device = backend.device()
    configs = {arch: model_config(arch, settings, manager) for arch in settings.architectures}
    if settings.baseline == "ctranslate2":
        from seqkit.bench.ct2 import check_baseline

        check_baseline(settings, configs, manager)
    for arch, config in configs.items():  # every bad input fails here, before any timing
        model = build_seqkit(config, settings, manager).to(device)
        if settings.baseline == "raw":
            build_raw_model(config, settings.vocab)
        check_length(arch, model, max(settings.lengths), device)
    del model

    threads_before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    result = BenchResult(meta=_meta(settings, backend, precision))
    timed_modes = list(settings.modes)
    sizes = {mode: settings.generate_batches if mode == "generate" else (None,) for mode in timed_modes}
    total = len(configs) * len(settings.lengths) * sum(len(sizes[mode]) for mode in timed_modes)
    done = 0
    generator = torch.Generator().manual_seed(settings.seed)
    try:
        for arch, config in configs.items():
            torch.manual_seed(settings.seed)
            model = build_seqkit(config, settings, manager).to(device)
            implementations = {"seqkit": model}
            if settings.baseline == "raw":
                raw = build_raw_model(config, settings.vocab)
                copy_from_seqkit(raw, model)
                implementations["raw"] = raw.to(device)
            translators, int8 = None, {}
            if settings.baseline == "ctranslate2":
                from seqkit.bench.ct2 import Translators, seqkit_int8

                translators = Translators(model, config, settings.vocab, settings.threads or
                                          torch.get_num_threads())
                int8 = seqkit_int8(model) if device.type == "cpu" else {}
            for mode in timed_modes:
                for length, size in itertools.product(settings.lengths, sizes[mode]):
                    if progress:
                        progress(done, total, f"{arch} {mode} L={length}" + (f" B={size}" if size else ""))
                    batch_size = {"train": settings.batch_size or max(1, settings.batch_tokens // length),
                                  "generate": size}.get(mode, 1)
                    batch = Batch.random(batch_size, length, settings.vocab, device, generator)
                    # generation compares search variants of seqkit's model, not the raw twin
                    compared = implementations if mode != "generate" else dict.fromkeys(GENERATE, model)
                    if mode == "generate" and translators is not None:  # the same weights, exported
                        engines = translators.implementations(count_parameters(model))
                        compared = {**compared, **int8, **engines}
                    result.rows += _run_case(arch, mode, compared, batch, settings, backend,
                                             precision)
                    done += 1
            del model, implementations, translators, int8
            gc.collect()
    finally:
        torch.set_num_threads(threads_before)
    if progress:
        progress(total, total, "done")
    return result


def _run_case(arch: str, mode: str, implementations: dict[str, nn.Module], batch: Batch,
              settings: BenchSettings, backend: Backend, precision: str) -> list[BenchRow]:
    """Rows of one (architecture, mode, length), implementations interleaved step by step."""
    length, batch_size = batch.source.shape[1], batch.source.shape[0]
    rows, steps, times = {}, {}, {}

    def guarded(name: str, run: Callable[[], Any]) -> Any:
        """Run; on failure, record it in the row and drop the implementation from the case."""
        try:
            return run()
        except Exception as exc:  # one size failing must not stop the bench
            rows[name].status = "out of memory" if is_oom(exc) else \
                f"error: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
            steps.pop(name, None)
            gc.collect()
            return None

    for name, model in implementations.items():
        if not isinstance(model, nn.Module):  # another engine (seqkit.bench.ct2): no FLOP counter
            rows[name] = BenchRow(arch, mode, name, length, batch_size, parameters=model.parameters)
            step = model.step(batch)
            guarded(name, step)  # the first warm-up step, as counting FLOPs is for the others
            if rows[name].status == "ok":
                steps[name], times[name] = step, []
            continue
        rows[name] = BenchRow(arch, mode, name, length, batch_size,
                              parameters=getattr(model, "bench_parameters", None) or count_parameters(model))
        model.train(mode == "train")
        eager = _make_step(mode, model, batch, backend, precision, compiled=False, name=name)
        # counting runs one step: the first warm-up step of the eager model as well
        rows[name].flops_per_step = guarded(name, lambda step=eager: count_flops(step))
        if not getattr(model, "bench_flops", True):
            rows[name].flops_per_step = None
        if rows[name].status == "ok":
            steps[name] = _make_step(mode, model, batch, backend, precision, compiled=True, name=name) \
                if settings.compile and mode != "generate" else eager
            times[name] = []
    for _ in range(settings.warmup):
        for name, step in list(steps.items()):
            guarded(name, step)
    for repetition in range(settings.repeat):
        # ABBA ABBA...: slow drift on a shared machine, and whatever running second costs or
        # gains, hit every implementation alike
        order = list(steps.items())[::-1 if repetition % 2 else 1]
        for name, step in order:
            seconds = guarded(name, lambda step=step: timed(step, backend))
            if seconds is not None:
                times[name].append(seconds)
    peak_flops = backend.peak_flops(precision)
    for name, step in list(steps.items()):
        backend.reset_peak_memory()
        guarded(name, step)
        if name in steps:
            rows[name].peak_memory_bytes = backend.memory_stats().get("peak")
        # generation counts the tokens it decoded; the other modes process the whole batch
        tokens = getattr(step, "tokens", batch_size * length)
        _fill_timing(rows[name], times[name], tokens, peak_flops)
    from seqkit.bench.ct2 import RATIOS

    for row, baseline in (("seqkit", "raw"), ("seqkit", "recompute"), ("beam4", "seqkit"), *RATIOS.items()):
        if row in rows and baseline in rows and rows[row].tokens_per_s and rows[baseline].tokens_per_s:
            rows[row].ratio_vs_baseline = rows[row].tokens_per_s / rows[baseline].tokens_per_s
    return list(rows.values())


def _make_step(mode: str, model: nn.Module, batch: Batch, backend: Backend, precision: str,
               compiled: bool, name: str = "seqkit") -> Callable[[], None]:
    if mode == "train":
        return train_step(model, torch.compile(model) if compiled else model, batch, backend,
                          precision)
    if mode == "generate":
        from seqkit.bench.ct2 import SEQKIT_INT8

        search = GENERATE[SEQKIT_INT8.get(name, name)]
        return GenerateStep(model, batch, backend, precision, **search)  # a Python loop
    return encode_step(torch.compile(model.encode) if compiled else model.encode, batch, backend,
                       precision)


def _fill_timing(row: BenchRow, seconds: list[float], tokens: int, peak_flops: float | None) -> None:
    if not seconds or row.status != "ok":
        return
    median = statistics.median(seconds)
    row.repetitions = len(seconds)
    row.ms_per_step, row.ms_per_step_min, row.ms_per_step_max = (
        1e3 * median, 1e3 * min(seconds), 1e3 * max(seconds))
    row.tokens_per_s = tokens / median
    row.tokens_per_s_min, row.tokens_per_s_max = tokens / max(seconds), tokens / min(seconds)
    row.mfu = mfu(row.flops_per_step, median, peak_flops)


def _check_settings(settings: BenchSettings) -> None:
    for mode in settings.modes:
        if mode not in MODES:
            raise ConfigError(f"--mode: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if not settings.architectures:
        raise ConfigError("--arch: name at least one architecture")
    if not settings.generate_batches or min(settings.generate_batches) < 1:
        raise ConfigError(f"--generate-batch: need batch sizes >= 1, got {list(settings.generate_batches)}")
    if not settings.lengths or min(settings.lengths) < 1:
        raise ConfigError(f"--lengths: need lengths >= 1, got {list(settings.lengths)}")
    if settings.baseline not in BASELINES:
        raise ConfigError(f"--baseline: unknown baseline {settings.baseline!r}; expected "
                          f"{' or '.join(b for b in BASELINES if b)}")
    for name in ("warmup", "repeat", "batch_tokens", "vocab", "d_model", "layers"):
        low = 0 if name == "warmup" else 1
        if getattr(settings, name) < low:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least {low}")
    if settings.vocab <= FIRST_TOKEN:
        raise ConfigError(f"--vocab: must be more than {FIRST_TOKEN} (the special tokens)")


def _meta(settings: BenchSettings, backend: Backend, precision: str) -> dict[str, Any]:
    import platform

    import seqkit

    meta = {
        "seqkit": seqkit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "backend": backend.name,
        "device": backend.device_name(),
        "precision": precision,
        "peak_flops": backend.peak_flops(precision),
        "threads": settings.threads or torch.get_num_threads(),
        "compile": settings.compile,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tokens": "train: target tokens per step (batch x length); encode: source tokens; "
                  "generate-greedy: tokens decoded (at most length, fewer after an early EOS)",
        "peak_memory": "as the backend reports it; on CPU the process's peak RSS, which "
                       "cannot be reset and so only grows over a run",
        "settings": asdict(settings),
    }
    if settings.baseline == "ctranslate2":
        import ctranslate2

        meta["ctranslate2"] = ctranslate2.__version__
    return meta
