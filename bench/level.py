"""The smoothed forecast alone (no network) on every field set, from the last value, from a smoothed level
(``ForecasterConfig.smoothed_level``) and, for positive series, from a smoothed level in logs
(``FeatureSpec.log_target``), each with its rates fitted on the training part as ``fit`` fits them: why
``seqcast-train init`` writes the level and the log for steps longer than a day only."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.accuracy import initialised
from bench.report import Table, progress
from models import Forecaster, ForecasterConfig
from training.datamodule import Part, SeriesDataModule
from training.evaluate import test_origins
from training.metrics import season_length, seasonal_naive_scale
from training.seasonal import fit_season_rates

VARIANTS = {"last value": (False, False), "smoothed": (True, False), "smoothed, in logs": (True, True)}


def run(datasets: list[str]) -> Table:
    table = Table("level", ["data set", "level", "rates", "validation MASE", "test MASE"])
    with tempfile.TemporaryDirectory() as workdir:
        for name in datasets:
            progress(f"level: {name}")
            config = yaml.safe_load(initialised(name, Path(workdir)).read_text())
            network = config["model"]["network"]["init_args"]["config"]
            if not network.get("seasonal_lag"):  # init writes none where no season fits
                continue
            plain = SeriesDataModule(**{**config["data"], "log_target": False})
            plain.setup()
            positive = all((s.target > 0).all() for s in plain.series)
            for variant, (level, log) in VARIANTS.items():
                if log and not positive:
                    continue
                data = SeriesDataModule(**{**config["data"], "log_target": True}) if log else plain
                data.setup()
                rates, scores = _smoothing(data, tuple(network["smoothed_seasons"]), network["seasonal_lag"], level)
                table.add(name, variant, str(list(rates)), *scores)
    table.notes.append(
        "The smoothed forecast of init's config for each set with no network; MASE in the target's units, at the "
        "report's origins (midnights for intraday data), over the validation and the test parts. In logs: "
        "for sets whose values are all positive, the smoothing of log(1 + y), mapped back."
    )
    return table


def _smoothing(
    data: SeriesDataModule, seasons: tuple[int, ...], lag: int, level: bool
) -> tuple[tuple[float, ...], tuple[float, float]]:
    """The rates fitted on the training parts, and the validation and test MASE of the smoothing alone."""
    config = ForecasterConfig(
        input_dim=1, horizon=data.horizon, seasonal_lag=lag, smoothed_seasons=seasons, smoothed_level=level
    )
    model = Forecaster(config)
    parts = [z[: data.train_part(s).end] for s, z in zip(data.series, data.scaled_targets, strict=True)]
    rates = fit_season_rates(model, parts)
    season, horizon = season_length(str(data.features.freq)), data.horizon
    errors: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    for series, z in zip(data.series, data.scaled_targets, strict=True):
        smoothed = model.smoothed_forecasts(torch.from_numpy(z.astype(np.float32)).unsqueeze(0))[0].double().numpy()
        forecasts = data.features.in_target_units(data.scaling_of(series).unscale_target(smoothed))
        y = series.target
        scale = seasonal_naive_scale(y[: data.train_part(series).end], season)
        for name, part in (("val", data.val_part(series)), ("test", data.test_part(series))):
            origins = _inside(test_origins(series, part.start, horizon, season), part, horizon)
            actual = y[origins[:, None] + 1 + np.arange(horizon)]
            errors[name].append(np.abs(forecasts[origins] - actual).mean(axis=1) / scale)
    val, test = (float(np.concatenate(errors[name]).mean()) for name in ("val", "test"))
    return rates, (val, test)


def _inside(origins: np.ndarray, part: Part, horizon: int) -> np.ndarray:
    """The origins whose whole horizon lies in ``part``."""
    return origins[origins + horizon < part.end]
