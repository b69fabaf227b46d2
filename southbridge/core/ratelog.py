"""Rate-limited logging: a hostile guest must not be able to flood the host's log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """Lets through at most `burst` messages per `interval` seconds per key; counts the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        interval: float = 5.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._now = now
        self._windows: dict[str, tuple[float, int]] = {}
        self.suppressed = 0

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` unless `key` has used its budget; returns whether it was logged."""
        t = self._now()
        start, count = self._windows.get(key, (t, 0))
        if t - start >= self.interval:
            if count > self.burst:
                self.logger.log(
                    level, "%s: %d similar messages suppressed", key, count - self.burst
                )
            start, count = t, 0
        count += 1
        if len(self._windows) > 4096 and key not in self._windows:
            self._windows.clear()  # bounded memory whatever keys a guest provokes
        self._windows[key] = (start, count)
        if count > self.burst:
            self.suppressed += 1
            return False
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def debug(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.DEBUG, key, msg, *args)
