"""Training on several processes with PyTorch's own engine: torchrun starts the processes,
torch.distributed connects them, DistributedDataParallel averages the gradients.

    seqkit run --nproc 2 CONFIG     (or: torchrun --nproc-per-node 2 --no-python seqkit run CONFIG)

``--nproc`` starts its workers on the launcher's own module search path (seqkit.cli.run.WORKER):
``torchrun -m seqkit`` would import a folder named seqkit in the working directory (a clone of
the repository) instead of the installed package; ``--no-python seqkit`` runs the console script.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in every process it starts;
``process_group(backend)`` reads them and joins the group over the backend plugin's torch.distributed
backend (gloo on CPU, nccl on CUDA). Without them seqkit is one process and every collective of
``Group`` returns its input.

Collectives move tensors only: JSON values travel as UTF-8 bytes in a uint8 tensor, never pickled
(torch.distributed's ``*_object`` functions unpickle what they receive).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from seqkit.errors import ConfigError, DistributedError
from seqkit.interfaces import Backend

log = logging.getLogger(__name__)

TIMEOUT_VARIABLE = "SEQKIT_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 600  # a rank that fails leaves the others waiting at most this long


@dataclass
class Group:
    """This process's place in the run: rank ``rank`` of ``world_size`` processes, ``local_rank``
    on its machine, computing on ``device``; collectives move tensors on ``transport`` (the device
    for nccl, the CPU for gloo). ``active`` when a process group was joined (torchrun started this
    process); rank 0 alone logs and writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    active: bool = False
    transport: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (float64, so counts up to 2**53 stay exact)."""
        if not self.active:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self.transport)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def all_gather(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's ``tensor`` (the same shape and dtype on every rank), on the CPU, by rank."""
        if not self.active:
            return [tensor.cpu()]
        local = tensor.to(self.transport).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return [part.cpu() for part in parts]

    def all_gather_json(self, value: Any) -> list[Any]:
        """Every rank's JSON-serializable ``value``, by rank."""
        if not self.active:
            return [value]
        data = _json_bytes(value)
        sizes = [int(s) for s in self.all_gather(torch.tensor([data.numel()], dtype=torch.int64))]
        padded = torch.zeros(max(sizes), dtype=torch.uint8)
        padded[: data.numel()] = data
        parts = self.all_gather(padded)
        return [json.loads(bytes(part[:size].numpy())) for part, size in zip(parts, sizes, strict=True)]

    def broadcast_json(self, value: Any) -> Any:
        """Rank 0's JSON-serializable ``value`` on every rank (other ranks pass anything)."""
        if not self.active:
            return value
        return self.all_gather_json(value if self.is_main else None)[0]


class DataParallel(DistributedDataParallel):
    """DistributedDataParallel that still answers the model's ``kind`` (the loss asks for it)."""

    @property
    def kind(self) -> str:
        return self.module.kind


def data_parallel(model: nn.Module, group: Group) -> DataParallel:
    """``model`` under DistributedDataParallel: rank 0's weights are broadcast at the start, and
    backward averages the gradients over the ranks.

    DistributedDataParallel expects a gradient for every parameter after each backward, and fails
    at the next step otherwise (a Transformer decoder's cross-attention in a language model gets
    none). The parameters left without one are found once here, by one backward of a tiny batch,
    and only then is ``find_unused_parameters`` turned on (it costs a walk of the graph per step).
    Every rank finds the same ones: the model and the probe are the same on all of them (a
    parameter used only for some inputs is not handled: see ``unused_parameters``)."""
    device_ids = [group.device] if group.device.index is not None else None  # None: CPU
    unused = unused_parameters(model, finite=False)[0] if hasattr(model, "shape") else []
    if unused:
        log.info("%d parameter(s) get no gradient in this model (%s%s): DistributedDataParallel "
                 "looks for unused parameters at every step", len(unused), ", ".join(unused[:4]),
                 ", ..." if len(unused) > 4 else "")
    return DataParallel(model, device_ids=device_ids, find_unused_parameters=bool(unused))


PROBE_BATCH, PROBE_LENGTH = 3, 5


def unused_parameters(model: nn.Module, finite: bool = True) -> tuple[list[str], list[str]]:
    """(names of parameters that get no gradient, names whose gradient is not finite) after one
    forward and backward of a tiny batch through the composed ``model`` (a seqkit.model.SeqModel).
    The random state, the buffers and the parameters' ``.grad`` are left as they were. With
    ``finite=False`` the gradients' values are not looked at (no wait for the device per
    parameter) and the second list is empty.

    A parameter whose use depends on the data (a branch taken for some inputs only) may be used by
    the probe's batch and not by a later one: DistributedDataParallel then fails at that step,
    naming it; such a component must use every parameter in every forward."""
    shape, device = model.shape, next(model.parameters()).device
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    batch, length = PROBE_BATCH, PROBE_LENGTH
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            _restored(model, buffers):
        torch.manual_seed(0)
        source = mask = target = None
        if model.encoder is not None:
            source = (torch.randn(batch, length, shape.source_features, device=device)
                      if shape.source_features
                      else torch.randint(4, max(shape.source_vocab, 5), (batch, length), device=device))
            mask = torch.ones(batch, length, dtype=torch.bool, device=device)
            mask[1:, length - 2:] = False  # ragged rows: padding paths are exercised too
        if model.decoder is not None:
            target = torch.randint(4, max(shape.target_vocab, 5), (batch, length), device=device)
        output = model(source, mask, target)
        grads = torch.autograd.grad(output.float().square().mean(), [p for _, p in params],
                                    allow_unused=True)
    unused = [name for (name, _), g in zip(params, grads, strict=True) if g is None]
    bad = [name for (name, _), g in zip(params, grads, strict=True)
           if finite and g is not None and not torch.isfinite(g).all()]
    return unused, bad


@contextlib.contextmanager
def _restored(model: nn.Module, buffers: dict[str, Tensor]) -> Iterator[None]:
    """Puts ``buffers`` (name -> saved value) back into ``model`` when the block ends."""
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])


def _json_bytes(value: Any) -> Tensor:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise DistributedError(f"cannot send a value between processes: {exc}") from None
    return torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8)


def launched() -> bool:
    """Whether torchrun (or another launcher setting RANK and WORLD_SIZE) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launched_rank() -> int:
    """This process's rank under torchrun; 0 when it runs alone."""
    return _env_int("RANK") if launched() else 0


def _env_int(name: str) -> int:
    value = os.environ.get(name, "0")
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}: not an integer: {value!r}") from None


def timeout() -> timedelta:
    """How long a collective waits for the slowest rank before failing (SEQKIT_DISTRIBUTED_TIMEOUT
    seconds; torchrun also stops every rank as soon as one fails)."""
    value = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ConfigError(f"{TIMEOUT_VARIABLE}: must be a positive number of seconds, got {value!r}")
    return timedelta(seconds=seconds)


@contextlib.contextmanager
def process_group(backend: Backend) -> Iterator[Group]:
    """Join the process group torchrun describes, over ``backend.distributed_backend``, and leave it
    at the end (also on errors). Outside torchrun: a one-process Group on ``backend.device()``."""
    if not launched():
        yield Group(device=backend.device())
        return
    rank, world_size, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise DistributedError(f"RANK={rank} is not in [0, WORLD_SIZE={world_size})")
    device, wait = backend.use_device(local_rank), timeout()
    try:
        dist.init_process_group(backend.distributed_backend, rank=rank, world_size=world_size,
                                timeout=wait)
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"cannot join the process group ({backend.distributed_backend}, "
                               f"rank {rank} of {world_size}): {str(exc).splitlines()[0]}") from None
    log.info("rank %d of %d (local rank %d) on %s over %s", rank, world_size, local_rank, device,
             backend.distributed_backend)
    try:
        transport = device if backend.distributed_backend == "nccl" else torch.device("cpu")
        yield Group(rank, world_size, local_rank, device, active=True, transport=transport)
    finally:
        dist.destroy_process_group()


__all__ = ["DataParallel", "DistributedError", "Group", "data_parallel", "launched", "launched_rank",
           "process_group", "timeout", "unused_parameters"]
