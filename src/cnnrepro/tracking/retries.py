"""Retries for a SQLite store under many writers, and the one-line error text every tracking error uses."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

RETRY_ATTEMPTS = 10
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
# Messages SQLite gives when another writer holds the database; anything else is a real error.
BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")

T = TypeVar("T")


def is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(message in text for message in BUSY_MESSAGES)


def retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call fn, retrying with jittered exponential backoff while SQLite reports the database locked.

    MLflow already waits 20 s per statement; this covers the cases SQLite refuses at once (a reader
    upgrading to writer) and a burst of many jobs finishing together.
    """
    delay = RETRY_FIRST_S
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == RETRY_ATTEMPTS or not is_busy(exc):
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RETRY_MAX_S)
    raise AssertionError("unreachable")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
