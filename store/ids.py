"""Ids for runs, classifiers, training and evaluation runs: one format everywhere."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone


def new_id(prefix: str, at: datetime | None = None) -> str:
    """``{prefix}-{UTC time}-{6 hex}``: sorts by time, unique across processes.

    >>> new_id("run", datetime(2026, 12, 1, 4, 30, tzinfo=timezone.utc))[:20]
    'run-20261201T043000-'
    """
    return f"{prefix}-{(at or datetime.now(timezone.utc)):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
