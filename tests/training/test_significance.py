"""The test that keeps a network only where it beats its anchor on validation by more than chance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from training.significance import beats_anchor, t_95


def _blocks(errors: np.ndarray, values: int = 16) -> np.ndarray:
    """Blocks of ``values`` scored each, whose mean errors are ``errors``."""
    return np.stack([errors * values, np.full(len(errors), float(values))], axis=1)


def test_a_steady_small_gain_beats_the_anchor() -> None:
    rng = np.random.default_rng(0)
    anchor = 1 + rng.random(40)
    won, why = beats_anchor(_blocks(anchor), _blocks(anchor * 0.97))
    assert won and why.startswith("beats it by more than chance") and "over 40 blocks" in why


def test_a_lead_made_in_one_block_is_chance() -> None:
    """A network that leads on the mean of the blocks but by one block's luck, as the best of many epochs on four
    yearly series did."""
    rng = np.random.default_rng(1)
    anchor = 1 + rng.random(4)
    network = anchor + rng.normal(0, 0.05, 4)
    network[0] -= 0.6  # the mean gain is about 0.15, all of it from here
    assert (anchor - network).mean() > 0.1
    won, why = beats_anchor(_blocks(anchor), _blocks(network))
    assert not won and why.startswith("does not beat it by more than chance: mean gain")


def test_one_block_is_too_few_to_tell() -> None:
    won, why = beats_anchor(_blocks(np.array([2.0])), _blocks(np.array([0.1])))
    assert not won and "1 validation block" in why


def test_blocks_of_other_data_are_refused() -> None:
    with pytest.raises(ValueError, match="validation blocks differ"):
        beats_anchor(_blocks(np.ones(3)), _blocks(np.ones(3), values=8))


@pytest.mark.parametrize("degrees", [1, 2, 3, 5, 10, 11, 14, 29, 45, 200, 5000])
def test_the_t_table_is_students_or_stricter(degrees: int) -> None:
    exact = float(stats.t.ppf(0.95, degrees))
    assert exact <= t_95(degrees) <= exact * 1.05
