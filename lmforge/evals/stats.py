"""Confidence intervals for the figures on the report card: one helper, used everywhere.

    from lmforge.evals.stats import proportion, wilson
    wilson(87, 100)                 # (0.789..., 0.922...): the 95 % Wilson score interval
    proportion(87, 100)             # {"k": 87, "n": 100, "rate": 0.87, "low": 0.7896, "high": 0.9224}

A proportion measured on n items (questions answered right, pairs ranked right, problems
solved) is reported with its 95 % Wilson score interval. Unlike the normal approximation
p ± 1.96 sqrt(p(1-p)/n) it never leaves [0, 1] and stays honest near 0 % and 100 % and on
small sets, which is where our held-out sets sit. A win rate with ties counted half passes
k = wins + ties / 2 (the interval is then approximate: a tie is not a Bernoulli outcome).
"""
from __future__ import annotations

import math

Z95 = 1.959963984540054     # the two-sided 95 % quantile of the standard normal


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for k successes out of n; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k={k} is outside [0, n={n}]")
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: float, n: int) -> dict:
    """k out of n as a manifest entry: counts, rate and its 95 % Wilson interval (4 decimals)."""
    low, high = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else 0.0, "low": round(low, 4), "high": round(high, 4)}
