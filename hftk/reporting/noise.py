"""When is "pretrained minus baseline" a gain? The noise a difference must clear before a report calls it one.

Two sources of noise, whichever is larger counts:

- **seed spread**: with several fine-tuning runs per side (different seeds, and for learning
  curves different training subsets), the larger of the two sample standard deviations;
- **binomial standard error** of the difference of two scores on the same n evaluation
  examples, for proportion-like metrics (accuracy, F1, precision, recall, exact match):
  `sqrt(p1(1-p1)/n + p2(1-p2)/n)`, the two runs treated as independent (a paired test on the
  per-example predictions would be tighter; the report does not have them for test sets).
  F1-like scores are treated as a proportion over the n evaluated examples: for QA's
  per-question F1 (a mean of values in [0, 1]) this bounds the standard error from above;
  for NER's entity F1 it stands in for a count of entities by the count of sentences.
  `p` is shrunk by one success and one failure, `(n·p + 1) / (n + 2)`, so that a score of
  0 or 1 on a small set still has a non-zero error.

No library computes this from a metrics.json (scipy/statsmodels test raw samples), so it is
hand-written here, small and tested against hand computations.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Metric names (after the eval_/test_ prefix) whose value is a proportion of the evaluated examples.
PROPORTION_METRICS = frozenset({"accuracy", "f1", "precision", "recall", "exact", "exact_match"})
# Tasks whose proportion metrics are reported on a 0-100 scale (SQuAD's convention).
PERCENT_TASKS = frozenset({"qa"})

WITHIN = "within noise"
NOT_ASSESSED = "not assessed"


@dataclass(frozen=True)
class Noise:
    """The level a difference must exceed, and what it came from (for the report's text)."""

    level: float | None
    source: str


def metric_name(key: str) -> str:
    """`eval_accuracy` / `test_f1` -> `accuracy` / `f1`."""
    for prefix in ("eval_", "test_"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def proportion_scale(key: str, task: str) -> float | None:
    """1 or 100 when the metric is a proportion (on that scale), None when the binomial model does not apply."""
    if metric_name(key) not in PROPORTION_METRICS:
        return None
    return 100.0 if task in PERCENT_TASKS else 1.0


def binomial_se(score: float, n: int, scale: float = 1.0) -> float:
    """Standard error of a proportion `score` (on `scale`) measured on n examples, in the score's units."""
    if n < 1:
        raise ValueError(f"need at least one evaluated example, got n={n}")
    p = min(max(score / scale, 0.0), 1.0)
    shrunk = (n * p + 1.0) / (n + 2.0)
    return scale * math.sqrt(shrunk * (1.0 - shrunk) / n)


def seed_spread(values: list[float]) -> float | None:
    """Sample standard deviation over seeds; None for a single run."""
    return statistics.stdev(values) if len(values) >= 2 else None


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def difference_noise(pretrained: list[float], baseline: list[float], key: str, task: str, n: int | None) -> Noise:
    """The noise of `mean(pretrained) - mean(baseline)`: max(seed spread, binomial SE of the difference)."""
    levels, sources = [], []
    spreads = [s for s in (seed_spread(pretrained), seed_spread(baseline)) if s is not None]
    if spreads:
        levels.append(max(spreads))
        sources.append("seed spread")
    scale = proportion_scale(key, task)
    if scale is not None and n:
        se = math.hypot(binomial_se(mean(pretrained), n, scale), binomial_se(mean(baseline), n, scale))
        levels.append(se)
        sources.append(f"binomial SE, n={n}")
    if not levels:
        return Noise(None, "one run per side and no standard error for this metric")
    return Noise(max(levels), sources[levels.index(max(levels))])


def verdict(delta: float, noise: Noise) -> str:
    """'within noise' unless |delta| exceeds the noise; 'not assessed' when no noise level is known."""
    if noise.level is None:
        return NOT_ASSESSED
    if abs(delta) <= noise.level:
        return WITHIN
    return "pretrained higher" if delta > 0 else "baseline higher"
