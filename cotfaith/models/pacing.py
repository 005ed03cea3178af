"""How hard one backend is pushed: a shared pause and an adaptive cap on attempts in flight.

Rate limits are the server's state, not one call's, so they are answered for all callers at
once (the retry layer in retry.py decides what each failure means):

- a pause: when a server says how long to wait (Retry-After, even 0), every caller waits that
  long and no longer; the server knows when it can take calls again, a client's exponential
  guess does not (a run that slept each 429's own backoff took 126 s where 500s took 49 s);
- a window (AIMD, as TCP does): the attempts in flight, halved when the server refuses (429)
  half of the window's recent attempts, and grown back by one per window's worth of successes,
  so a run settles near what the server takes instead of hammering it. Half, not any: a 429
  now and then among successes is noise (a random 30% of 429s halved the window down to 1 and
  made the run 1.5x slower than the same share of 500s); a server at its limit refuses most
  of what is sent beyond it. Only attempts sent since the last cut count: the 429s of those
  already in flight answer the overload that was just answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class Pacer:
    def __init__(self, limit: int = 16) -> None:
        self.ceiling = max(1, int(limit))
        """The configured concurrency: the window never grows past it."""
        self.window = self.ceiling
        self._credit = 0
        """Successes since the window last grew: it grows by one per window's worth."""
        self.in_flight = 0
        self.until = 0.0
        """Monotonic time before which nobody starts an attempt (the server's asked pause)."""
        self.epoch = 0
        """Bumped at each cut: a 429 from an attempt started before it does not cut again."""
        self.cuts = 0
        self.lowest = self.ceiling
        """The smallest window this run came down to (reported with the run's retries)."""
        self._recent: deque[bool] = deque()
        """Outcomes (refused or not) of attempts sent since the last cut, the last `window`."""
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self.window

    def hold(self, seconds: float) -> None:
        """Nobody starts an attempt for `seconds` (a shorter hold never shortens a pause)."""
        self.until = max(self.until, time.monotonic() + max(0.0, seconds))

    async def acquire(self) -> int:
        """Wait for the pause to end and a place in the window; returns the epoch to hand back
        to `release`."""
        while True:
            delay = self.until - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    self._wake()  # we may have been woken for a place: let another have it
                    raise
                continue
            if self.in_flight < self.limit:
                self.in_flight += 1
                return self.epoch
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # we were handed a place we will not use: pass it on
                raise

    def release(self, epoch: int, rate_limited: bool = False) -> None:
        """An attempt ended. Its outcome counts towards a cut only if it was sent since the
        last one; a window's worth of successes grows the window by one."""
        self.in_flight = max(0, self.in_flight - 1)
        if epoch == self.epoch:
            self._recent.append(rate_limited)
            while len(self._recent) > self.window:
                self._recent.popleft()
            if 2 * sum(self._recent) >= self.window and rate_limited:
                # halve, but not below the attempts the server is still working on: refusals
                # come back fast, successes slowly, so with one place too many the record
                # fills with refusals and halving would undershoot the server's capacity
                narrower = max(1, min(self.window - 1, max(self.window // 2, self.in_flight)))
                if narrower < self.window:  # (a window of one has nowhere to go)
                    self.window = narrower
                    self._recent.clear()
                    self._credit = 0
                    self.epoch += 1
                    self.cuts += 1
                    self.lowest = min(self.lowest, self.window)
        if not rate_limited and self.window < self.ceiling:
            self._credit += 1
            if self._credit >= self.window:
                self.window += 1
                self._credit = 0
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
