"""The errors a training run raises on purpose, each with a message that says what to change."""

from __future__ import annotations

__all__ = ["NonFiniteLossError", "OutputDirError", "TrainingConfigError"]


class TrainingConfigError(ValueError):
    """A training config, or the data it names, cannot work; raised before training starts."""


class OutputDirError(TrainingConfigError):
    """The output folder holds something other than this run."""


class NonFiniteLossError(FloatingPointError):
    """Training met a non-finite loss or gradient under ``nonfinite_loss="stop"``; no weights were updated with it."""
