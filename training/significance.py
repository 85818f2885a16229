"""Whether a trained network beats its anchor on validation by more than chance.

The best of a run's epochs by validation loss is the best of many noisy draws, and on short series validation
is a few forecasts: an epoch can lead the anchor there and trail it on every later window (four yearly series,
one validation forecast each: the best epoch led the last value by 12% and scored twice its error on test).
The rule is the one-standard-error rule of model selection (Breiman et al.'s CART, glmnet's ``lambda.1se``):
the simpler model, here the anchor, is kept unless the other beats it by more than one standard error of the
difference. The difference is Diebold and Mariano's, the mean of the paired differences in loss. Forecasts
from neighbouring origins share most of their horizon, so the differences are summed over blocks of a horizon
of origins in one series; a block's difference is its weighted errors, the anchor's less the network's, per
value scored. Neighbouring blocks still share targets (a block's last origin reads into the next one's
horizon), so the variance adds their covariance, Newey and West's with one lag, never below the variance alone.
"""

from __future__ import annotations

import math

import numpy as np


def beats_anchor(anchor: np.ndarray, network: np.ndarray) -> tuple[bool, str]:
    """Whether ``network``'s validation blocks (N, 3: weighted error sum, values scored, row; see
    ``ForecastTask.validation_blocks``) beat ``anchor``'s, the same blocks, by more than one standard error; and
    why, in words."""
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
    error = math.sqrt(variance / blocks)
    verdict = "beats" if mean > error else "does not beat"
    return mean > error, (
        f"{verdict} it by more than chance: mean gain {mean:.4f} per value over {blocks} blocks of a horizon, "
        f"standard error {error:.4f}"
    )
