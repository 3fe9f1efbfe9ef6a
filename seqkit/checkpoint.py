"""Checkpoints: safetensors only (nothing is ever unpickled), written atomically.

A model file holds the weights (tied weights stored once) and, in the safetensors header, a JSON
document under the key ``seqkit``: format version, seqkit version, the resolved config as TOML,
the task's state (tokenizers, labels) and the plugin, distribution and version behind each
component. A trainer file beside it holds the optimizer moments, RNG state, step and data position.

Every file carries a CRC-32 of its contents (tensor names, dtypes, shapes and bytes, and the JSON
document) in its header, so a flipped bit anywhere is an error on load, not a silently wrong weight.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_bytes
from torch import Tensor, nn

from seqkit import __version__, storage
from seqkit.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_HEADER_BYTES = 100 * 1024 * 1024  # what safetensors itself accepts
CHECKSUM_KEY = "seqkit_crc32"  # beside "seqkit" in the safetensors header's __metadata__


# -- files --------------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see seqkit.storage)."""
    storage.atomic_write(path, data)


def atomic_copy(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` atomically, without holding it in memory."""
    storage.atomic_copy(source, path)


def content_crc32(tensors: dict[str, Tensor], text: str = "") -> str:
    """CRC-32 (hex) of the tensors' names, dtypes, shapes and bytes, in name order, and ``text``."""
    crc = zlib.crc32(text.encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        crc = zlib.crc32(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode(), crc)
        crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def save_tensors(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Tensors plus a JSON document, as one safetensors file with its checksum, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    text = json.dumps(meta)
    metadata = {"seqkit": text, CHECKSUM_KEY: content_crc32(tensors, text)}
    atomic_write(path, save_bytes(tensors, metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and JSON document of a file written by ``save_tensors``, memory-mapped: the
    tensors are views of a private (copy-on-write) map of the file, so loading allocates nothing
    the size of the file. The header is checked before any tensor is made (a header claiming an
    absurd size, a truncated file, offsets that do not tile the data), then the checksum (a
    flipped bit): each is a one-line CheckpointError naming the file."""
    path = Path(path)
    if (kind := storage.not_a_file(path)) is not None:
        raise CheckpointError(f"{path}: {kind}, not a checkpoint file")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
            header_len = int.from_bytes(head, "little")
            if header_len > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path}: corrupt safetensors header (claims {header_len} bytes, "
                                      f"file has {size})")
            header = json.loads(f.read(header_len))
            if not isinstance(header, dict):
                raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
            metadata = header.pop("__metadata__", None) or {}
            layout = _layout(path, header, size - 8 - header_len)
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None
        start = 8 + header_len
        tensors = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # frombuffer on a map: it is writable (COW)
            for name, (dtype, shape, begin, end) in layout.items():
                count = (end - begin) // dtype.itemsize
                tensors[name] = (torch.frombuffer(mapped, dtype=dtype, count=count, offset=start + begin)
                                 .reshape(shape) if count else torch.empty(shape, dtype=dtype))
        if not isinstance(metadata, dict):
            raise CheckpointError(f"{path}: corrupt safetensors header (__metadata__ is not an object)")
        text, checksum = metadata.get("seqkit", ""), metadata.get(CHECKSUM_KEY)
        if checksum is None:
            raise CheckpointError(f"{path}: no {CHECKSUM_KEY} checksum in the header: not written by "
                                  "seqkit, or corrupt")
        if not isinstance(text, str) or content_crc32(tensors, text) != checksum:
            raise CheckpointError(f"{path}: corrupt file: its contents do not match their checksum")
        meta = json.loads(text)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a folder, not a checkpoint file") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, OverflowError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file: {detail}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupt file: its seqkit metadata is not a JSON object")
    return tensors, meta


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
           "U8": torch.uint8, "BOOL": torch.bool}


def _layout(path: Path, header: dict[str, Any], data_bytes: int) -> dict[str, tuple]:
    """name -> (dtype, shape, begin, end) of each tensor in a safetensors header, checked as
    safetensors checks it: known dtypes, byte ranges that match the shapes and tile the data
    exactly (no gap, no overlap, nothing past the end of the file)."""
    layout, ranges = {}, []
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = _DTYPES[info["dtype"]], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors header (entry {name!r})") from None
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
                and type(begin) is int and type(end) is int and 0 <= begin <= end):
            raise CheckpointError(f"{path}: corrupt safetensors header (entry {name!r})")
        if math.prod(shape) * dtype.itemsize != end - begin:
            raise CheckpointError(f"{path}: corrupt safetensors header ({name!r}: shape {shape} does "
                                  f"not fit its {end - begin} bytes)")
        layout[name] = (dtype, shape, begin, end)
        ranges.append((begin, end))
    position = 0
    for begin, end in sorted(ranges):
        if begin != position:
            raise CheckpointError(f"{path}: corrupt safetensors header (tensor data overlaps or has gaps)")
        position = end
    if position != data_bytes:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file "
                              f"(expected {position} data bytes, found {data_bytes})")
    return layout


# -- models -------------------------------------------------------------------------------------


def unique_state(model: nn.Module) -> dict[str, Tensor]:
    """The state dict with each shared tensor (tied embeddings) under its first name only."""
    seen, state = set(), {}
    for name, tensor in model.state_dict().items():
        ident = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if tensor.numel() == 0 or ident not in seen:
            seen.add(ident)
            state[name] = tensor
    return state


def save_model(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    meta = {"format_version": FORMAT_VERSION, "seqkit_version": __version__, **meta}
    save_tensors(path, unique_state(model), meta)


def load_weights(model: nn.Module, tensors: dict[str, Tensor], path: Path) -> None:
    """Load weights saved by save_model; names left out as duplicates must be tied aliases."""
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shapes that differ: the first one, in one line
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
                      str(exc).splitlines()[0] if str(exc) else "")
        raise CheckpointError(f"{path}: weights do not fit this model ({detail})") from None
    aliases = set(model.state_dict()) - set(unique_state(model))
    if unexpected or set(missing) - aliases:
        raise CheckpointError(f"{path}: weights do not fit this model (missing "
                              f"{sorted(set(missing) - aliases)[:3]}, unexpected {sorted(unexpected)[:3]})")


def check_meta(meta: dict[str, Any], path: Path, manager) -> None:
    """Refuse a checkpoint from a newer format, or one whose components the installed plugins do
    not provide as they were when it was written: a missing component, or one of that name from
    another plugin or distribution, is a one-line CheckpointError naming both. Another version of
    the same distribution loads, with a warning."""
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: not a seqkit checkpoint (no format version)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by seqkit {meta.get('seqkit_version')} in checkpoint format "
                              f"{version}; this seqkit ({__version__}) reads format {FORMAT_VERSION} "
                              "- upgrade seqkit")
    components = meta.get("components", {})
    if not isinstance(components, dict):
        raise CheckpointError(f"{path}: corrupt metadata: components is not a JSON object")
    for info in components.values():
        try:
            kind, name, plugin = info["kind"], info["name"], info["plugin"]
            distribution, version = info.get("distribution"), info.get("version")
        except (KeyError, TypeError):
            raise CheckpointError(f"{path}: corrupt metadata: a component lacks kind, name or "
                                  "plugin") from None
        needed = f"{kind} {name!r} from plugin {plugin} ({distribution or '?'} {version or '?'})"
        found = _installed(manager, kind, name, plugin)
        if not found:
            raise CheckpointError(f"{path}: needs {needed}, which is not installed or is broken; "
                                  f"pip install {distribution}=={version}")
        if len(found) > 1 or found[0].plugin != plugin or found[0].distribution != distribution:
            installed = " and ".join(reg.provenance() for reg in found)
            raise CheckpointError(f"{path}: needs {needed}; the installed {name!r} comes from {installed}")
        if found[0].version != version:
            log.warning("%s: written with %s %s %s; using %s", path, kind, name,
                        f"from {plugin} ({distribution} {version})", found[0].provenance())


def _installed(manager, kind: str, name: str, plugin: str) -> list:
    """The registrations that could stand for the recorded component: the recording plugin's own
    if it is loaded, else every registration of that name."""
    return [reg for reg in manager.registrations(kind) if reg.name == name and reg.plugin == plugin] or \
        [reg for reg in manager.registrations(kind) if reg.name == name]


def pin_components(data: dict[str, Any], meta: dict[str, Any], manager) -> dict[str, Any]:
    """The checkpoint's config ``data`` (parsed TOML) with each component name that is ambiguous
    here (a plugin installed since registers it too) qualified with the plugin ``meta`` recorded,
    so that a checkpoint loads the component it was trained with. Call after ``check_meta``."""
    tables = {"task": data.get("task"), **{k: v for k, v in (data.get("model") or {}).items()
                                           if k in ("encoder", "decoder")}}
    for key, info in (meta.get("components") or {}).items():
        table = tables.get(key)
        if not isinstance(table, dict) or table.get("name") != info.get("name"):
            continue  # qualified already, or not a component this config has
        if sum(reg.name == info["name"] for reg in manager.registrations(info["kind"])) > 1:
            table["name"] = f"{info['plugin']}:{info['name']}"
    return data


# -- trainer state ------------------------------------------------------------------------------


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer's state as flat tensors plus JSON (param groups, scalar entries)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor],
                      meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
