"""The errors a user's input can raise: a config value out of range, a weights file that does not
match its config. Each message names the field (or file key), the value and what is allowed."""

from __future__ import annotations

__all__ = ["ConfigError", "WeightsError"]


class ConfigError(ValueError):
    """A config value out of range; the message names the field, the value and what is allowed."""


class WeightsError(ValueError):
    """Weights that do not match the model shape or contain non-finite values."""
