from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.train import PEERS, run, time_to_reach
from tests.conftest import synthetic_frame


def test_time_to_reach_is_the_first_epoch_at_or_below_the_mark() -> None:
    curve = [(10.0, 0.9), (20.0, 0.6), (30.0, 0.7), (40.0, 0.5)]
    assert time_to_reach(curve, 0.6) == 20.0
    assert time_to_reach(curve, 0.55) == 40.0
    assert time_to_reach(curve, 0.4) is None


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    synthetic_frame(points=1400).to_csv(tmp_path / "series.csv", index=False)
    config = yaml.safe_load(Path("configs/lstm.yaml").read_text())
    config["data"].update(
        path=str(tmp_path / "series.csv"),
        future_covariates=["temperature"],
        calendar=["time_of_day"],
        input_size=48,
        horizon=12,
        val_size=192,
        test_size=192,
        chunk_length=144,
        chunk_stride=2,
        warmup=12,
    )
    config["model"]["network"]["init_args"]["config"].update(hidden_size=8, head_hidden=16, context_size=4)
    config["checkpoint"]["dirpath"] = str(tmp_path / "checkpoints")
    config["trainer"]["max_epochs"] = 12
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_every_method_trains_and_is_scored_on_the_same_origins(small_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    table = run(small_config, ["lstm"], list(PEERS), epochs=6, seed=0, out=out)
    rows = {row[0]: row for row in table.rows}
    assert len(rows) == 1 + len(PEERS)
    mase = {method: row[table.columns.index("test MASE")] for method, row in rows.items()}
    assert all(np.isfinite(value) and value > 0 for value in mase.values()), mase
    # A daily cycle driven by a known covariate: forecasts that line up with their actuals come near the
    # noise floor within a few epochs; forecasts a step or a day out of line would not.
    assert mase["seqcast LSTM"] < 1.0 and mase["NeuralForecast LSTM"] < 1.0, mase
    assert max(mase.values()) < 1.5, mase
    curves = json.loads((out / "train_curves.json").read_text())
    seconds = [point[0] for point in curves["seqcast LSTM"]]
    assert len(seconds) >= 2 and seconds == sorted(seconds)
    assert (out / "train.png").stat().st_size > 0
