"""What a provider's batch says: a batch's state when polled, and one request's result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psychometrics.models.base import ModelReply


@dataclass
class BatchState:
    """A polled batch: ``ended`` when no more results will come (completed, expired, cancelled or failed);
    ``status`` the provider's word; ``error`` why a batch failed as a whole (then it has no results)."""

    ended: bool
    status: str
    error: str | None = None
    result_paths: tuple[str, ...] = ()  # where its result lines are read, in order


@dataclass
class LineResult:
    """One request's result: a ``reply``, or an ``error`` (an exception saying why) that is ``retryable``
    (expired, cancelled, a transient server error: submitted again) or not (a rejected request)."""

    custom_id: str
    reply: ModelReply | None = None
    error: BaseException | None = None
    retryable: bool = False


def as_object(value: Any) -> dict:
    """``value`` when it is a JSON object, else an empty one (a provider's answer is read defensively)."""
    return value if isinstance(value, dict) else {}
