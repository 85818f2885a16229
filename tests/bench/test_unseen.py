from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bench.unseen import _session, _window
from models import Checkpoint, FeatureSpec, Forecaster, ForecasterConfig, Scaling
from service.engine import Engine
from training.data import Series


def test_a_held_out_series_is_forecast_as_a_session_and_as_windows_of_its_own_statistics() -> None:
    torch.manual_seed(0)
    config = ForecasterConfig(input_dim=1, horizon=12, hidden_size=8, lagged_outputs=True, context_size=4)
    known = {"trained": Scaling((100.0,), (10.0,))}
    checkpoint = Checkpoint(
        config, FeatureSpec("y", freq="MS"), known["trained"], Forecaster(config).state_dict(), series_scaling=known
    )
    engine = Engine(checkpoint, "test")
    y = 5000 + 300 * np.sin(np.arange(120) / 2) + np.arange(120)
    series = Series("new", pd.date_range("2000-01-01", periods=120, freq="MS"), y, np.zeros((120, 0)))
    origins = np.array([83, 95, 107])

    session = _session(engine, series, origins)
    opening = engine.check_history(y[:84].tolist(), None, None, None)
    assert opening.scaling == Scaling.fit(y[:84, None])  # the series' own statistics, not the trained series'
    for k, origin in enumerate(origins):
        # The session's forecast at each origin is one pass over everything up to it, scaled as its opening was.
        whole = engine.check_observe(y[: origin + 1].tolist(), None, 0, None, None, opening.scaling)
        np.testing.assert_allclose(
            session[k], engine.run([engine.prepare(whole)], [None]).forecasts[0, :, 0], rtol=1e-4
        )

    windows = _window(engine, series, origins, 36)
    last = engine.prepare(engine.check_history(y[72:108].tolist(), None, None, None))
    np.testing.assert_allclose(windows[2], engine.run([last], [None]).forecasts[0, :, 0], rtol=1e-5)
    assert session.shape == windows.shape == (3, 12)
