"""Shared fixtures: small synthetic series and an isolated BentoML model store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def synthetic_frame(points: int = 2000, seed: int = 0, series: int = 1, freq: str = "30min") -> pd.DataFrame:
    """Half-hourly series with a daily cycle driven by a temperature-like covariate, plus noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(series):
        ds = pd.date_range("2024-01-01", periods=points, freq=freq)
        phase = 2 * np.pi * np.arange(points) / 48
        temperature = 15 + 5 * np.sin(phase - 1.0) + rng.normal(0, 0.5, points)
        y = 10 + index + 2 * np.sin(phase) + 0.3 * temperature + rng.normal(0, 0.2, points)
        frame = pd.DataFrame({"ds": ds, "y": y, "temperature": temperature})
        if series > 1:
            frame.insert(0, "unique_id", f"s{index}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def series_csv(tmp_path: Path) -> Path:
    path = tmp_path / "series.csv"
    synthetic_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def bentoml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return home
