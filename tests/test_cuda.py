"""What only a GPU can check, through seqkit's public API as a user calls it: training in bf16
autocast and in fp16 with the grad scaler, the fused AdamW the trainer picks on CUDA (same losses
as the CPU's), torch.compile of the training step (same losses as eager), generation on the device
(greedy and beam 4 give the CPU's tokens for a small fp32 model), and seqkit's distributed path
over nccl with one process (what torchrun starts, world size 1).

Marked ``cuda`` and skipped where torch sees no CUDA device; ``bash examples/gpu_check.sh OUT``
runs them on a machine with one (``python -m pytest -m cuda tests/test_cuda.py``). Tiny models:
each test takes seconds on a GPU, the compiled one about a minute (inductor compiles forward and
backward).
"""

from __future__ import annotations

import logging
import math
import socket
import statistics

import pytest
import torch

import seqkit
from seqkit import checkpoint as ckpt
from seqkit.run_folder import RunFolder

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA GPU: torch.cuda.is_available() is false here "
                              "(bash examples/gpu_check.sh OUT runs these on a machine with one)"),
]

BACKEND = "cuda"
STEPS = 24
# losses of the same run on two devices (or eager and compiled) differ by float rounding that
# the optimizer carries from step to step; over 24 steps of a 32-wide model that stays far below
# this, while a wrong gradient, optimizer or cast moves the loss by more than 10%
LOSS_RTOL = 1e-2


def tiny(backend: str = BACKEND, precision: str = "fp32", arch: str = "transformer", steps: int = STEPS,
         layers: int = 1, **train) -> dict:
    """A small seq2seq run without dropout (two devices compute the same function). All sequences
    have one length, so every batch has one shape and torch.compile compiles once."""
    component = {"layers": layers, "dropout": 0.0, **({"heads": 2} if arch == "transformer" else {})}
    return {
        "seed": 1,
        "backend": backend,
        "precision": precision,
        "task": {"name": "reverse", "symbols": 8, "min_len": 6, "max_len": 6, "train_size": 256,
                 "valid_size": 32, "test_size": 0},
        "model": {"d_model": 32, "embedding_dropout": 0.0,
                  "encoder": {"name": arch, **component}, "decoder": {"name": arch, **component}},
        "data": {"batch_tokens": 256, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 4, "eval_every": steps, "log_every": 1,
                  "keep_last": 1, **train},
    }


def losses(run) -> list[float]:
    """The training loss of every step, in order."""
    records = [r for r in RunFolder(run).read_metrics() if "eval" not in r and "loss" in r]
    return [r["loss"] for r in sorted(records, key=lambda r: r["step"])]


def assert_learns(run) -> None:
    found = losses(run)
    assert len(found) == STEPS and all(math.isfinite(x) for x in found), found
    assert statistics.mean(found[-4:]) < 0.9 * statistics.mean(found[:4]), f"the loss did not fall: {found}"


def assert_same_losses(found, expected, what: str) -> None:
    assert len(found) == len(expected) == STEPS
    for step, (a, b) in enumerate(zip(found, expected, strict=True), start=1):
        assert a == pytest.approx(b, rel=LOSS_RTOL), f"{what}: step {step}: {a} against {b}"


@pytest.fixture
def logits_dtypes(monkeypatch):
    """The dtypes of the output head's logits in every training forward (the trainer's autocast)."""
    from seqkit import trainer

    seen: set[torch.dtype] = set()
    real = trainer.loss_parts

    def recording(model, batch, label_smoothing=0.0):
        hook = model.head.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
        try:
            return real(model, batch, label_smoothing)
        finally:
            hook.remove()

    monkeypatch.setattr(trainer, "loss_parts", recording)
    return seen


def weights_of(run) -> dict[str, torch.Tensor]:
    return ckpt.load_tensors(RunFolder(run).latest_checkpoint())[0]


def test_bf16_autocast_trains_with_fp32_weights(tmp_path, logits_dtypes):
    result = seqkit.train(tiny(precision="bf16"), out=tmp_path / "run", test=False)
    assert result.summary["step"] == STEPS
    assert logits_dtypes == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert_learns(tmp_path / "run")
    weights = weights_of(tmp_path / "run")
    assert {t.dtype for t in weights.values()} == {torch.float32}  # master weights stay fp32
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_fp16_trains_with_the_grad_scaler(tmp_path, logits_dtypes):
    run = tmp_path / "run"
    seqkit.train(tiny(precision="fp16"), out=run, test=False)
    assert logits_dtypes == {torch.float16}
    assert_learns(run)
    folder = RunFolder(run)
    _, info = ckpt.load_tensors(folder.trainer_path(folder.latest_checkpoint()))
    scaler = info.get("scaler")
    assert scaler, f"fp16 training saved no grad scaler state: {sorted(info)}"
    assert math.isfinite(scaler["scale"]) and scaler["scale"] > 0, scaler
    assert all(torch.isfinite(t).all() for t in weights_of(run).values())


def test_fused_adamw_on_cuda_trains_as_the_cpu_does(tmp_path, monkeypatch):
    made: list[dict] = []

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    seqkit.train(tiny(), out=tmp_path / "cuda", test=False)
    assert made and made[-1].get("fused") is True, made
    seqkit.train(tiny(backend="cpu"), out=tmp_path / "cpu", test=False)
    assert not made[-1].get("fused")
    assert_same_losses(losses(tmp_path / "cuda"), losses(tmp_path / "cpu"), "fused AdamW on cuda vs cpu")
    assert_learns(tmp_path / "cuda")


def test_compiled_training_step_matches_eager(tmp_path, monkeypatch):
    compiled: list[object] = []
    real_compile = torch.compile

    def recording_compile(model, *args, **kwargs):
        compiled.append(model)
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", recording_compile)
    torch.compiler.reset()  # no graphs from an earlier test: what runs below compiles here
    seqkit.train(tiny(compile=True), out=tmp_path / "compiled", test=False)
    assert compiled, "train.compile = true did not call torch.compile"
    from torch._dynamo.utils import counters

    assert counters["stats"]["unique_graphs"] >= 1, dict(counters["stats"])
    seqkit.train(tiny(), out=tmp_path / "eager", test=False)
    assert_same_losses(losses(tmp_path / "compiled"), losses(tmp_path / "eager"), "compiled vs eager")


SOURCES = ["0 1 2 3 4 5", "7 6 5 4 3 2", "3 3 1 7 0 2", "5 2 6 1 4 4", "1 0 7 2 6 3", "2 4 6 0 1 5"]


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_generation_on_the_gpu_gives_the_cpus_tokens(tmp_path, arch):
    """A model trained on the CPU in fp32, loaded on each device: the same greedy and beam-4
    tokens, scores equal to float rounding; in bf16 on the GPU it generates too (tokens may
    differ there: bf16 keeps 8 bits of mantissa)."""
    # trained until it is sure of its outputs (loss ~0.01): no near ties for rounding to flip
    seqkit.train(tiny(backend="cpu", arch=arch, steps=200, layers=2, lr=5e-3, warmup_steps=10),
                 out=tmp_path / "run", test=False)
    cpu = seqkit.load(tmp_path / "run", device="cpu")
    gpu = seqkit.load(tmp_path / "run", device="cuda")
    assert gpu.device.type == "cuda"
    for beam in (1, 4):
        expected = cpu.generate(SOURCES, beam=beam, scores=True)
        found = gpu.generate(SOURCES, beam=beam, scores=True)
        for source, a, b in zip(SOURCES, found, expected, strict=True):
            assert a.tokens == b.tokens, f"beam {beam}, source {source!r}: cuda {a} against cpu {b}"
            assert a.score == pytest.approx(b.score, rel=1e-4, abs=1e-4), (beam, source)
    half = seqkit.load(tmp_path / "run", device="cuda", precision="bf16")
    outputs = half.generate(SOURCES, beam=4)
    assert len(outputs) == len(SOURCES) and all(isinstance(text, str) and text for text in outputs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_one_process_trains_through_the_distributed_path_over_nccl(tmp_path, monkeypatch, caplog):
    """torchrun --nproc-per-node 1 sets these variables: seqkit joins a process group over the
    backend's nccl, wraps the model in DistributedDataParallel and agrees on checkpoints through
    nccl collectives; with one process the losses are those of a run without the group."""
    import torch.distributed as dist

    seqkit.train(tiny(), out=tmp_path / "alone", test=False)
    launched = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(free_port())}
    for name, value in launched.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.INFO, logger="seqkit.distributed")
    result = seqkit.train(tiny(), out=tmp_path / "group", test=False)
    assert "rank 0 of 1" in caplog.text and "over nccl" in caplog.text, caplog.text
    assert not dist.is_initialized()  # the group was left at the end
    assert result.summary["world_size"] == 1 and result.summary["step"] == STEPS
    assert_same_losses(losses(tmp_path / "group"), losses(tmp_path / "alone"), "nccl world size 1 vs alone")


def test_compiled_generation_on_the_gpu_gives_eager_tokens():
    """SearchConfig(compile=True) on CUDA compiles the decode step over the static cache with
    mode="reduce-overhead" (CUDA graphs where torch can use them): greedy, beam 4 and min_len, at
    batch 5 and 1, give eager decoding's tokens on the device (scores to float rounding), in three
    graphs at most (tests/test_compiled_decode.py holds the count on the CPU)."""
    from generation_cases import DECODERS, ends_early, make_model, sources
    from torch._dynamo.utils import counters

    from seqkit import compiled_decode
    from seqkit.generate import SearchConfig, generate

    torch.compiler.reset()
    counters.clear()
    model = ends_early(make_model(DECODERS["transformer-pre"]), *sources()).to(BACKEND)
    source, mask = (t.to(BACKEND) for t in sources())
    for search in (SearchConfig(max_len=12), SearchConfig(max_len=12, beam=4, nbest=2),
                   SearchConfig(max_len=8, min_len=3)):
        for s, m in ((source, mask), (source[:1], mask[:1])):
            eager = generate(model, s, m, search)
            found = generate(model, s, m, SearchConfig(**{**search.__dict__, "compile": True}))
            tokens = [[h.tokens for h in row] for row in found]
            assert tokens == [[h.tokens for h in row] for row in eager], search
            for row, eager_row in zip(found, eager, strict=True):
                for h, e in zip(row, eager_row, strict=True):
                    assert h.score == pytest.approx(e.score, rel=1e-4, abs=1e-4), search
    step = compiled_decode._STEPS[model]
    assert step.mode == "reduce-overhead" and step.calls > 0
    assert counters["stats"]["unique_graphs"] <= 3, dict(counters["stats"])
