"""Whether a trained network beats its anchor on validation by more than chance.

The best of a run's epochs by validation loss is the best of many noisy draws, and on short series validation
is a few forecasts: an epoch can lead the anchor there and trail it on every later window (four yearly series,
one validation forecast each: the best epoch led the last value by 12% and scored twice its error on test). The
test is Diebold and Mariano's: the mean of the paired differences in loss against its standard error.
Forecasts from neighbouring origins share most of their horizon, so the differences are summed over blocks of
a horizon of origins in one series; a block's difference is its weighted errors, the anchor's less the
network's, per value scored. Neighbouring blocks still share targets (a block's last origin reads into the
next one's horizon), so the variance adds their covariance, Newey and West's with one lag, never below the
variance alone. The 5% is the test's own: it does not allow for the best epoch having been chosen on the same
validation, so a lucky epoch passes more often than that.
"""

from __future__ import annotations

import math

import numpy as np

# One-sided 5% points of Student's t by degrees of freedom, rounded up; between two rows the lower one's, and
# past the last row the last one's: stricter than the exact point, never looser.
_T_95 = {1: 6.314, 2: 2.920, 3: 2.354, 4: 2.132, 5: 2.016, 6: 1.944, 7: 1.895, 8: 1.860, 9: 1.834, 10: 1.813,
         12: 1.783, 15: 1.754, 20: 1.725, 30: 1.698, 60: 1.671, 120: 1.658}  # fmt: skip


def t_95(degrees: int) -> float:
    """Student's t one-sided 5% point for ``degrees`` of freedom (at least 1), from the table."""
    return _T_95[max(d for d in _T_95 if d <= degrees)]


def beats_anchor(anchor: np.ndarray, network: np.ndarray) -> tuple[bool, str]:
    """Whether ``network``'s validation blocks (N, 3: weighted error sum, values scored, row; see
    ``ForecastTask.validation_blocks``) beat ``anchor``'s, the same blocks, at 5% one-sided; and why, in words."""
    if anchor.shape != network.shape or not np.array_equal(anchor[:, 1:], network[:, 1:]):
        raise ValueError("the anchor's and the network's validation blocks differ")
    blocks = len(anchor)
    if blocks < 2:
        return False, f"does not beat it by more than chance: {blocks} validation block of a horizon is too few to tell"
    gains = (anchor[:, 0] - network[:, 0]) / anchor[:, 1]
    mean, deviations = float(gains.mean()), gains - gains.mean()
    neighbours = anchor[1:, 2] == anchor[:-1, 2]  # consecutive blocks of one row
    lag_one = float((deviations[1:] * deviations[:-1])[neighbours].sum()) / blocks
    variance = (float((deviations**2).mean()) + 2 * max(lag_one, 0.0)) * blocks / (blocks - 1)
    needed = t_95(blocks - 1) * math.sqrt(variance / blocks)
    verdict = "beats" if mean > needed else "does not beat"
    return mean > needed, (
        f"{verdict} it by more than chance: mean gain {mean:.4f} per value over {blocks} blocks of a horizon, "
        f"{needed:.4f} needed (one-sided 5%)"
    )
