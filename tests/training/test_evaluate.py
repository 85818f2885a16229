"""The windowed reading of a report: each origin from a zero state over its last ``input_size`` inputs."""

from __future__ import annotations

import numpy as np
import torch

from models.forecaster import Forecaster, ForecasterConfig
from training.evaluate import windowed_forecasts


def test_origins_with_less_history_than_a_window_are_forecast_from_all_they_have() -> None:
    torch.manual_seed(0)
    config = ForecasterConfig(
        input_dim=2, horizon=3, future_dim=1, hidden_size=8, seasonal_lag=4, smoothed_seasons=(4,)
    )
    model = Forecaster(config).eval()
    inputs = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    origins = np.array([6, 9, 20, 30])  # the first two have fewer than 12 inputs up to them
    future = torch.from_numpy(np.stack([inputs[o + 1 : o + 4, 1:] for o in origins]))
    with torch.no_grad():
        windowed = windowed_forecasts(model, inputs, origins, future, input_size=12)
        for row, origin in enumerate(origins):
            window = torch.from_numpy(inputs[max(0, origin - 11) : origin + 1]).unsqueeze(0)
            alone, _ = model(window, future=future[row : row + 1])
            torch.testing.assert_close(windowed[row], alone[0])
    assert not torch.allclose(windowed[0], windowed[1])
