from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.features import Scaling
from tests.conftest import synthetic_frame
from training.data import DataError
from training.datamodule import SeriesDataModule

SIZES = dict(input_size=96, horizon=24, val_size=200, test_size=200, chunk_length=240, chunk_stride=40, warmup=12)


def _module(path: Path, **overrides: object) -> SeriesDataModule:
    options = {**SIZES, **overrides}
    data = SeriesDataModule(path=str(path), future_covariates=["temperature"], calendar=["time_of_day"], **options)  # type: ignore[arg-type]
    data.setup("fit")
    return data


def _all_train_items(data: SeriesDataModule) -> list[tuple[torch.Tensor, ...]]:
    dataset = data.train_dataset()
    return [dataset[i] for i in range(len(dataset))]


def test_validation_and_test_values_change_nothing_training_sees(tmp_path: Path) -> None:
    frame = synthetic_frame(points=1500)
    frame.to_csv(tmp_path / "a.csv", index=False)
    held_out = frame.index >= 1500 - 400
    frame.loc[held_out, "y"] *= 50
    frame.loc[held_out, "temperature"] = -100.0
    frame.to_csv(tmp_path / "b.csv", index=False)
    a, b = _module(tmp_path / "a.csv"), _module(tmp_path / "b.csv")
    assert a.scaling == b.scaling
    items_a, items_b = _all_train_items(a), _all_train_items(b)
    assert len(items_a) == len(items_b) > 10
    for item_a, item_b in zip(items_a, items_b, strict=True):
        for tensor_a, tensor_b in zip(item_a, item_b, strict=True):
            torch.testing.assert_close(tensor_a, tensor_b)
    # ... while the validation batch does see them, so the check above is not vacuous.
    assert not torch.equal(a.held_out_dataset("val")[0][2], b.held_out_dataset("val")[0][2])


def test_targets_are_the_next_horizon_values_and_stay_in_their_part(series_csv: Path) -> None:
    data = _module(series_csv)
    z = data.scaled_targets[0]
    train_end = data.train_part(data.series[0]).end
    dataset = data.train_dataset()
    for index in range(len(dataset)):
        span = dataset.spans[index]
        _, _, targets, mask = dataset[index]
        assert not mask[: SIZES["warmup"]].any()
        for t in range(0, span.length, 37):
            steps = span.start + t + 1 + np.arange(SIZES["horizon"])
            expected_mask = np.full(len(steps), steps[-1] < train_end and t >= SIZES["warmup"])
            assert mask[t].numpy().tolist() == expected_mask.tolist()
            np.testing.assert_allclose(targets[t][mask[t] > 0].numpy(), z[steps[expected_mask]], rtol=1e-6)


def test_inputs_at_a_step_hold_nothing_from_later_steps(series_csv: Path) -> None:
    data = _module(series_csv)
    series = data.series[0]
    later_changed = series.target.copy()
    later_changed[1000:] += 5.0
    from dataclasses import replace

    changed = data.encode(replace(series, target=later_changed))
    np.testing.assert_array_equal(changed[:1000], data.inputs[0][:1000])
    assert not np.array_equal(changed[1000:], data.inputs[0][1000:])


def test_validation_chunk_starts_with_a_full_input_window(series_csv: Path) -> None:
    data = _module(series_csv)
    x, _, _, mask = data.held_out_dataset("val")[0]
    first_origin = int(mask.any(dim=1).float().argmax())
    assert first_origin == SIZES["input_size"] - 1
    assert x.shape == (SIZES["input_size"] + SIZES["val_size"] - 1, data.features.input_dim)


def _uneven(path: Path, short: int) -> Path:
    """Two series: s0 of 1500 points and s1 of ``short``."""
    frame = synthetic_frame(points=1500, series=2)
    frame[(frame.unique_id == "s0") | (frame.index < 1500 + short)].to_csv(path, index=False)
    return path


def test_series_too_short_for_one_training_origin_is_named(tmp_path: Path) -> None:
    # val 200 + test 200 + warmup 12 + horizon 24 + 1
    with pytest.raises(DataError, match=r"series 's1': has 436 points; training, validation and test need 437"):
        _module(_uneven(tmp_path / "short.csv", 436))


def test_a_series_shorter_than_a_chunk_and_a_window_trains_and_validates_on_what_it_has(tmp_path: Path) -> None:
    data = _module(_uneven(tmp_path / "uneven.csv", 450), chunk_length=480)  # s1: 50 points to train on
    dataset = data.train_dataset()
    (only,) = [index for index, span in enumerate(dataset.spans) if span.series == 1]
    x, _, targets, mask = dataset[only]
    assert x.shape == (480, data.features.input_dim)  # padded at its end to the chunk's length
    np.testing.assert_array_equal(x[:450].numpy(), data.inputs[1])
    assert not x[450:].any()
    counted = mask.any(dim=1).nonzero().flatten().tolist()
    assert counted == list(range(12, 50 - 24))  # past the warmup, each with its whole horizon in training
    np.testing.assert_allclose(targets[12].numpy(), data.scaled_targets[1][13:37], rtol=1e-6)
    # Validation: s1 has 50 points of history, not input_size's 96; both chunks share one length.
    val = data.held_out_dataset("val")
    assert (val.spans[1].start, val.spans[0].length) == (0, val.spans[1].length)
    _, _, _, val_mask = val[1]
    counted = val_mask.any(dim=1).nonzero().flatten()
    assert (int(counted[0]), int(counted[-1])) == (49, 249 - 24)  # val's origins only, none past it


def test_scaling_comes_from_training_rows_only(series_csv: Path) -> None:
    data = _module(series_csv)
    frame = pd.read_csv(series_csv)
    train = frame.iloc[: data.train_part(data.series[0]).end]
    assert data.scaling.mean[0] == pytest.approx(train.y.mean())
    assert data.scaling.std[1] == pytest.approx(train.temperature.std(ddof=0))


def test_per_series_scaling_standardises_each_series_by_its_own_training_part(tmp_path: Path) -> None:
    frame = synthetic_frame(points=1000, series=2)
    frame.loc[frame.unique_id == "s1", "y"] *= 1000  # one series a thousand times the other's level
    frame.to_csv(tmp_path / "two.csv", index=False)
    data = _module(tmp_path / "two.csv", per_series_scaling=True)
    for index, series in enumerate(data.series):
        train = frame[frame.unique_id == series.uid].iloc[: data.train_part(series).end]
        assert data.series_scaling[series.uid].mean[0] == pytest.approx(train.y.mean())
        assert data.series_scaling[series.uid].std[1] == pytest.approx(train.temperature.std(ddof=0))
        z = data.scaled_targets[index][: len(train)]
        assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1.0)
        np.testing.assert_allclose(data.inputs[index][:, 0], data.scaled_targets[index], rtol=1e-6, atol=1e-6)
    pooled = _module(tmp_path / "two.csv")
    assert pooled.series_scaling == {}
    assert pooled.scaled_targets[0].mean() < -0.9  # pooled, the small series sits far below the mean


def test_mase_weights_weigh_each_series_by_its_seasonal_naive_error_in_scaled_units(tmp_path: Path) -> None:
    frame = synthetic_frame(points=1000, series=2)
    noisy = frame.unique_id == "s1"
    frame.loc[noisy, "y"] += np.random.default_rng(1).normal(0, 3, int(noisy.sum()))  # yesterday says less here
    frame.to_csv(tmp_path / "two.csv", index=False)
    data = _module(tmp_path / "two.csv", per_series_scaling=True, mase_weights=True)
    for index, series in enumerate(data.series):
        z = data.scaled_targets[index][: data.train_part(series).end]
        assert data.weights[index] == pytest.approx(1 / np.abs(z[48:] - z[:-48]).mean())  # a day of half-hours
        for dataset in (data.train_dataset(), data.held_out_dataset("val")):
            masks = [dataset[i][3] for i in range(len(dataset)) if dataset.spans[i].series == index]
            values = torch.cat([mask.unique() for mask in masks]).unique()
            np.testing.assert_allclose(values.numpy(), [0.0, data.weights[index]], rtol=1e-6)
    assert data.weights[0] > 1.5 * data.weights[1]


def test_a_log_target_is_scaled_in_logs_read_back_in_units_and_refuses_values_below_zero(tmp_path: Path) -> None:
    frame = synthetic_frame(points=1000, series=1)
    frame["y"] = np.exp(frame.y / frame.y.std())  # positive, swings that grow with the level
    frame.to_csv(tmp_path / "positive.csv", index=False)
    data = _module(tmp_path / "positive.csv", log_target=True)
    series, scaling = data.series[0], data.scaling
    train = np.log1p(frame.y.to_numpy()[: data.train_part(series).end])
    assert scaling.mean[0] == pytest.approx(train.mean()) and scaling.std[0] == pytest.approx(train.std())
    assert scaling.std[1] == pytest.approx(frame.temperature.iloc[: len(train)].std(ddof=0))  # covariates as they are
    np.testing.assert_allclose(data.inputs[0][:, 0], data.scaled_targets[0], rtol=1e-5, atol=1e-5)
    back = data.features.in_target_units(scaling.unscale_target(data.scaled_targets[0].astype(float)))
    np.testing.assert_allclose(back, frame.y, rtol=1e-9)
    assert data.features.in_target_units(np.array([-5.0]))[0] == 0  # below log(1 + 0) is no value of the target

    frame.loc[700, "y"] = -0.5
    frame.to_csv(tmp_path / "negative.csv", index=False)
    with pytest.raises(
        DataError, match=r"data.log_target: series 'series' has 1 value of 'y' below zero, the first -0.5 at"
    ):
        _module(tmp_path / "negative.csv", log_target=True)
    # Live scoring reads a session's spread in the target's units: near the level, the log's spread times it.
    raw = 1000 + np.random.default_rng(0).normal(0, 10, 5000)
    own = Scaling.fit(np.log1p(raw)[:, None])
    assert data.features.target_spread(own) == pytest.approx(raw.std(), rel=0.02)
