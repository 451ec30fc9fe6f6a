"""Paired bootstrap intervals for the gains the gate decides on.

Every candidate answers the same questions, so a gain is the mean of per-question differences
(challenger minus base, challenger minus champion, challenger minus the constant baseline).
Its interval: resample the questions with replacement `resamples` times (seeded numpy
generator, the same index draws for every comparison), take the mean difference of each
resample, and read the 2.5% and 97.5% percentiles (95%). A rule that needs the gain to be at
least a threshold passes when the lower bound clears it, fails when the upper bound does not,
and otherwise says "not enough evidence".

`detectable_gain` is the smallest true gain this many questions would detect with 80% power at
the 5% level (two-sided normal approximation: 2.8 x standard error of the mean difference);
the report warns when it is larger than the gate's configured minimum.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

Z95 = 1.959964


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    resamples: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired_bootstrap(
    a: list[float], b: list[float], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Interval of mean(a - b) over paired observations."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    if not a:
        return Interval(0.0, 0.0, 0.0, 0, resamples)
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(diff.mean()), float(low), float(high), len(diff), resamples)


def detectable_gain(a: list[float], b: list[float]) -> float:
    """Smallest true mean difference detectable with 80% power (alpha 0.05, two-sided)."""
    n = len(a)
    if n < 2:
        return math.inf
    diff = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(diff) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / (n - 1))
    # An all-equal difference has no spread; assume a single flipped answer's worth of noise.
    sd = max(sd, 1 / n)
    return 2.8 * sd / math.sqrt(n)
