"""Logging for node processes: JSON lines when stderr is not a terminal, and
repeated messages rate-limited so a fault that repeats (a stalled recovery, a
peer that keeps refusing) cannot flood the log."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def __init__(self, node_id: int | None = None) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.node_id is not None:
            out["node"] = self.node_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class RateLimitFilter(logging.Filter):
    """Passes at most ``burst`` records per ``window`` seconds for each message
    template (logger, level, format string); drops the rest and, with the first
    record of that template let through afterwards, says how many were dropped.

    Memory is bounded: at most ``max_keys`` templates are tracked (the oldest
    window is forgotten first).
    """

    def __init__(
        self,
        *,
        burst: int = 5,
        window: float = 10.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        # template -> [window start, records passed in it, records dropped since]
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            dropped = int(state[2]) if state is not None else 0
            if state is None and len(self._seen) >= self.max_keys:
                del self._seen[next(iter(self._seen))]
            self._seen.pop(key, None)
            self._seen[key] = [now, 1.0, 0.0]
            if dropped:
                record.msg = f"{record.msg} [{dropped} similar messages suppressed]"
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


def setup_logging(level: str, node_id: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.Formatter.converter = time.gmtime
    else:
        handler.setFormatter(JsonFormatter(node_id))
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
