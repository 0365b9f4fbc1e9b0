"""How ``xpconv bench`` times a call: blocks of calls, alternated in rounds, with their spread.

Two libraries are never timed by alternating single calls: PyTorch's OpenMP threads spin for
a while after each call and take the cores from whatever runs next.  Instead each contender
runs a *block* of calls (the block's first call is dropped: it pays for the other library's
threads going idle and for cold caches), the contenders take turns block by block in several
rounds, so that a slow spell of this shared machine hits them all, and each figure is the
median of its per-round medians, reported with the lowest and highest of those medians.
PyTorch itself runs in its own process (:mod:`xpconv.tools.rival`), so that nothing of it
(threads, allocator, imported libraries) lives in the process that times xpconv.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# A pause before each block, so that the previous block's worker threads (NumPy's OpenBLAS,
# PyTorch's OpenMP, in this process or the other) have stopped spinning.
PAUSE_S = 0.2
ROUNDS = 3


def block_times(
    fn: Callable[[], object],
    sync: Callable[[], None] = lambda: None,
    *,
    min_seconds: float = 0.5,
    min_repeats: int = 5,
    max_repeats: int = 200,
) -> list[float]:
    """Wall times in seconds of a block of ``fn()`` calls, the block's first call not counted.

    At least ``min_repeats`` timed calls and at least ``min_seconds`` of them (at most
    ``max_repeats``); ``sync`` ends each call (a device synchronize on CUDA).
    """
    time.sleep(PAUSE_S)
    fn()  # dropped: the block's first call
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_seconds and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> float:
    """Median of one :func:`block_times` block (its defaults), in seconds."""
    return statistics.median(block_times(fn, sync))


@dataclass(frozen=True)
class _PerRound:
    """One value per round: the median and the range reported."""

    rounds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def low(self) -> float:
        return min(self.rounds)

    @property
    def high(self) -> float:
        return max(self.rounds)


class Timing(_PerRound):
    """One contender's per-round medians (seconds)."""


class Ratio(_PerRound):
    """``other / own`` per round (a throughput ratio of ``own`` over ``other``)."""

    @classmethod
    def of(cls, own: Timing, other: Timing) -> Ratio:
        return cls(tuple(o / s for s, o in zip(own.rounds, other.rounds, strict=True)))


# A contender: given (min_seconds, min_repeats), time one block and return its call times.
Contender = Callable[[float, int], Sequence[float]]


def local(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> Contender:
    """A contender timed in this process."""
    return lambda min_seconds, min_repeats: block_times(fn, sync, min_seconds=min_seconds, min_repeats=min_repeats)


def side_by_side(
    *contenders: Contender,
    rounds: int = ROUNDS,
    min_seconds: float = 0.5,
    min_repeats: int = 5,
    log: Callable[[str], None] | None = None,
) -> list[Timing]:
    """Time ``contenders`` block by block in ``rounds`` alternating rounds (each round a block of
    each, in turn; the order flips every round).  ``min_seconds`` is each contender's total over
    the rounds.  ``log``, when given, hears of every round that took more than 2 s."""
    per_round: list[list[float]] = [[] for _ in contenders]
    order = list(range(len(contenders)))
    for k in range(rounds):
        start = time.perf_counter()
        for i in order if k % 2 == 0 else reversed(order):
            times = contenders[i](min_seconds / rounds, min_repeats)
            per_round[i].append(statistics.median(times))
        if log is not None and time.perf_counter() - start > 2.0:
            log(f"round {k + 1} of {rounds} done ({time.perf_counter() - start:.0f} s)")
    return [Timing(tuple(t)) for t in per_round]
