"""Shared timing loop of the probes: the fastest and the median of several rounds, in milliseconds per call."""

import time


def time_ms(function, calls: int, rounds: int = 7, warmup: int = 5) -> tuple[float, float]:
    for _ in range(warmup):
        function()
    per_call = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        per_call.append((time.perf_counter() - started) / calls * 1e3)
    return min(per_call), sorted(per_call)[len(per_call) // 2]
