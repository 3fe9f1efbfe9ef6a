"""``regression``: sequences of feature vectors to real values, from .npz or .csv files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqkit.errors import DataError
from seqkit.interfaces import PAD, EncodedExample, Example, Task
from seqkit.model import ModelShape
from seqkit.readers import read_float_sequences
from seqkit_tasks.common import chain, configured_splits, split_files, write_samples
from seqkit_tasks.config import RegressionConfig


class RegressionTask(Task):
    """Source (S, F) float32 features; target (K,) float32 values, standardized with the train
    split's mean and standard deviation when ``standardize`` (``decode`` undoes it)."""

    model_kind = "regressor"

    def metric_directions(self) -> dict[str, str]:
        return {"mse": "lower", "mae": "lower", "r2": "higher"}

    @classmethod
    def sample_options(cls, folder: Path) -> dict[str, Any]:
        """Rows of target, then one feature per step (features = outputs = 1)."""
        return write_samples(folder, ".csv", ["0.5,1,2,3", "1.5,2,1", "-1,0.5,0.25,4,2"])

    def __init__(self, config: RegressionConfig):
        self.config = config
        self.mean = [0.0] * config.outputs
        self.std = [1.0] * config.outputs
        self.fitted = False

    def splits(self) -> list[str]:
        return configured_splits(self.config)

    def examples(self, split: str) -> Iterator[Example]:
        config = self.config
        return chain(read_float_sequences(path, config.features, config.outputs)
                     for path in split_files(config, split))

    def fit(self, train: Iterable[Example]) -> None:
        values = np.array([self._values(e) for e in train], dtype=np.float64).reshape(-1, self.config.outputs)
        if len(values) == 0:
            raise DataError("task.train: no examples")
        if self.config.standardize:
            std = values.std(axis=0)
            self.mean = values.mean(axis=0).tolist()
            self.std = np.where(std > 0, std, 1.0).tolist()  # a constant target is only shifted
        self.fitted = True

    def state_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean, std = [float(v) for v in state["mean"]], [float(v) for v in state["std"]]
        if len(mean) != self.config.outputs or len(std) != self.config.outputs:
            raise DataError(f"regression state has {len(mean)} outputs, the config {self.config.outputs}")
        self.mean, self.std, self.fitted = mean, std, True

    def model_shape(self) -> ModelShape:
        return ModelShape("regressor", source_features=self.config.features,
                          num_outputs=self.config.outputs, pad_id=PAD)

    def encode(self, example: Example) -> EncodedExample:
        if not self.fitted:
            raise RuntimeError("regression: call fit() or load_state_dict() before encoding")
        try:
            source = torch.as_tensor(np.asarray(example.source, dtype=np.float32))
        except (ValueError, TypeError):
            raise DataError(f"{example.where or '<input>'}: the source is not a sequence of "
                            f"{self.config.features}-value feature vectors") from None
        if source.dim() != 2 or source.size(1) != self.config.features:
            raise DataError(f"{example.where or '<input>'}: expected a sequence of "
                            f"{self.config.features}-value feature vectors, got shape {tuple(source.shape)}")
        target = None
        if example.target is not None:
            values = (np.asarray(self._values(example)) - self.mean) / self.std
            target = torch.as_tensor(values, dtype=torch.float32)
        return EncodedExample(source, target)

    def decode(self, output: Tensor) -> list[float]:
        """Model outputs (K,) -> values on the scale of the data."""
        values = np.asarray(output.detach().cpu().float() if isinstance(output, Tensor) else output,
                            dtype=np.float64).reshape(-1)
        return (values * self.std + self.mean).tolist()

    def metrics(self, predictions: list[list[float]], references: list[list[float]]) -> dict[str, float]:
        """mse and mae over every value; r2 averaged over outputs (1 for a perfect fit of a
        constant reference, 0 for an imperfect one)."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if not references:
            return {}
        outputs = self.config.outputs
        pred = np.asarray(predictions, dtype=np.float64).reshape(-1, outputs)
        ref = np.asarray(references, dtype=np.float64).reshape(-1, outputs)
        residual = ((ref - pred) ** 2).sum(axis=0)
        total = ((ref - ref.mean(axis=0)) ** 2).sum(axis=0)
        safe_total = np.where(total > 0, total, 1.0)
        r2 = np.where(total > 0, 1.0 - residual / safe_total, np.where(residual == 0, 1.0, 0.0))
        return {"mse": float(((ref - pred) ** 2).mean()), "mae": float(np.abs(ref - pred).mean()),
                "r2": float(r2.mean())}

    def _values(self, example: Example) -> list[float]:
        try:
            values = np.asarray(example.target, dtype=np.float64).reshape(-1)
        except (ValueError, TypeError):
            values = np.zeros(0)
        if values.size != self.config.outputs:
            raise DataError(f"{example.where or '<input>'}: expected {self.config.outputs} target "
                            f"value(s), got {example.target!r}")
        return values.tolist()
