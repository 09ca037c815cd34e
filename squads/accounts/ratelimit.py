"""Sign-in throttling: too many failures for one account or from one address wait before trying again."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    """Counts failures per key in a sliding window; a key over its limit must wait.

    Keys are strings such as ``user:alice`` and ``peer:10.0.0.7``: the caller
    checks both, so one address cannot try many accounts and many addresses
    cannot hammer one account. Memory is bounded: the oldest keys are dropped."""

    def __init__(self, *, limit: int = 5, window_s: float = 900.0, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.max_keys, self.clock = limit, window_s, max_keys, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float | None:
        """Seconds to wait before any of ``keys`` may try again, or None when they may try now."""
        now = self.clock()
        waits = []
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                if not times:
                    continue
                while times and now - times[0] > self.window_s:
                    times.popleft()
                if len(times) >= self.limit:
                    waits.append(self.window_s - (now - times[0]))
        return max(waits) if waits else None

    def failed(self, *keys: str) -> None:
        """Count one failure against each key."""
        now = self.clock()
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, deque(maxlen=self.limit * 2)).append(now)
            while len(self._failures) > self.max_keys:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of ``keys`` (a successful sign-in)."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
