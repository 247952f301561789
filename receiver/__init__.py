"""Local stand-in for an SMS provider's webhook, for `make run`, tests and benchmarks."""

from __future__ import annotations

from receiver.inprocess import Receiver

__all__ = ["Receiver"]
