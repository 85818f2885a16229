from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models import (
    Checkpoint,
    CheckpointError,
    FeatureSpec,
    Forecaster,
    ForecasterConfig,
    Scaling,
    load_checkpoint,
    save_checkpoint,
)

DATA = Path(__file__).parent / "data"


def _checkpoint(cell: str = "gru") -> Checkpoint:
    config = ForecasterConfig(input_dim=2, horizon=4, cell=cell, hidden_size=8, quantiles=(0.2, 0.5, 0.8))  # type: ignore[arg-type]
    return Checkpoint(
        config,
        FeatureSpec("y", past_covariates=("t",)),
        Scaling((1.0, 2.0), (3.0, 4.0)),
        Forecaster(config).state_dict(),
        {"epoch": 3},
    )


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    original = _checkpoint()
    save_checkpoint(original, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.config == original.config
    assert loaded.features == original.features
    assert loaded.scaling == original.scaling
    assert loaded.metadata == {"epoch": 3}
    x = torch.randn(2, 9, 2)
    torch.testing.assert_close(loaded.build_model()(x)[0], original.build_model()(x)[0])


def test_statistics_per_series_survive_a_round_trip_and_are_looked_up_by_series(tmp_path: Path) -> None:
    by_series = {"north": Scaling((5.0, 2.0), (1.0, 4.0)), "south": Scaling((500.0, 2.0), (90.0, 4.0))}
    save_checkpoint(replace(_checkpoint(), series_scaling=by_series), tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.series_scaling == by_series
    assert loaded.scaling_for("south") == by_series["south"]
    with pytest.raises(LookupError, match="unknown series 'east'"):
        loaded.scaling_for("east")
    with pytest.raises(LookupError, match="required"):
        loaded.scaling_for(None)
    assert _checkpoint().scaling_for(None) == _checkpoint().scaling


def test_first_format_checkpoint_still_loads_and_forecasts_the_same() -> None:
    checkpoint = load_checkpoint(DATA / "checkpoint_v1.pt")
    expected = json.loads((DATA / "checkpoint_v1_expected.json").read_text())
    assert checkpoint.features == FeatureSpec("y", ("humidity",), ("temperature",), ("time_of_day",), "30min")
    assert checkpoint.config.quantiles == (0.1, 0.5, 0.9)
    forecast, _ = checkpoint.build_model()(torch.tensor(expected["input"]), future=torch.tensor(expected["future"]))
    torch.testing.assert_close(forecast, torch.tensor(expected["forecast"]))


def test_second_format_checkpoint_still_loads_its_series_statistics_and_forecasts_the_same() -> None:
    checkpoint = load_checkpoint(DATA / "checkpoint_v2.pt")
    expected = json.loads((DATA / "checkpoint_v2_expected.json").read_text())
    assert checkpoint.series_scaling == {"north": Scaling((5.0,), (1.5,)), "south": Scaling((500.0,), (90.0,))}
    assert checkpoint.config.change_from_last and checkpoint.config.lagged_outputs
    forecast, _ = checkpoint.build_model()(torch.tensor(expected["input"]))
    torch.testing.assert_close(forecast, torch.tensor(expected["forecast"]))


def test_third_format_checkpoint_still_loads_its_smoothing_and_forecasts_the_same() -> None:
    checkpoint = load_checkpoint(DATA / "checkpoint_v3.pt")
    expected = json.loads((DATA / "checkpoint_v3_expected.json").read_text())
    assert checkpoint.config.smoothed_seasons == (3, 6)
    model = checkpoint.build_model()
    torch.testing.assert_close(model.season_rates, torch.tensor([0.3, 0.1]))
    forecast, _ = model(torch.tensor(expected["input"]))
    torch.testing.assert_close(forecast, torch.tensor(expected["forecast"]))


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    payload = _checkpoint().to_payload()
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran while loading",))


def test_a_pickled_object_is_never_unpickled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"format_version": 1, "config": _Payload()}, f)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_each_model_is_written_as_the_oldest_format_that_describes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain: 2; seasonal: 3; level-free: 4; a smoothed level: 5; a log target: 6. An older version loads what it
    can forecast right and refuses the rest by its version."""
    seasonal = ForecasterConfig(input_dim=1, horizon=2, hidden_size=4, seasonal_lag=4, smoothed_seasons=(2, 4))
    plain = _checkpoint()
    configs = {"plain": plain.config, "seasonal": seasonal, "level_free": replace(seasonal, level_free=True)}
    configs["smoothed_level"] = replace(seasonal, level_free=True, smoothed_level=True)
    configs["log_target"] = plain.config
    for name, config in configs.items():
        features = replace(plain.features, log_target=name == "log_target")
        checkpoint = replace(plain, config=config, features=features, state_dict=Forecaster(config).state_dict())
        save_checkpoint(checkpoint, tmp_path / f"{name}.pt")
    written = {name: torch.load(tmp_path / f"{name}.pt", weights_only=True)["format_version"] for name in configs}
    assert written == {"plain": 2, "seasonal": 3, "level_free": 4, "smoothed_level": 5, "log_target": 6}
    assert {name: load_checkpoint(tmp_path / f"{name}.pt").config for name in configs} == configs
    assert load_checkpoint(tmp_path / "log_target.pt").features.log_target
    # A model in units is written as before log targets, whose readers refuse fields they do not know.
    stored = {name: torch.load(tmp_path / f"{name}.pt", weights_only=True)["features"] for name in configs}
    assert [name for name, features in stored.items() if "log_target" in features] == ["log_target"]
    assert not load_checkpoint(tmp_path / "plain.pt").features.log_target
    refusals = [((1, 2, 3, 4, 5), "log_target"), ((1, 2, 3, 4), "smoothed_level"), ((1, 2, 3), "level_free")]
    for readable, refused in [*refusals, ((1, 2), "seasonal")]:
        monkeypatch.setattr("models.checkpoint.READABLE_VERSIONS", readable)
        for name in configs:
            if written[name] in readable:
                assert load_checkpoint(tmp_path / f"{name}.pt").config == configs[name]
        with pytest.raises(CheckpointError, match=f"format_version {written[refused]} is not supported"):
            load_checkpoint(tmp_path / f"{refused}.pt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ensemble_size": 4}, "fields this seqcast does not know: ensemble_size"),
        ({"cell": "tcn"}, "not valid: cell must be"),
        ({"quantiles": [0.9, 0.1]}, "not valid: quantiles must be strictly increasing"),
    ],
)
def test_a_config_this_version_cannot_build_is_refused_naming_what(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    payload = _checkpoint().to_payload()
    payload["config"] = {**payload["config"], **change}
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "c.pt")


def test_weights_that_do_not_fit_the_config_are_refused_when_built(tmp_path: Path) -> None:
    payload = _checkpoint().to_payload()
    payload["config"]["hidden_size"] = 16
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="weights do not fit its config"):
        load_checkpoint(tmp_path / "c.pt").build_model()


def test_features_this_version_cannot_read_are_refused_naming_them(tmp_path: Path) -> None:
    payload = _checkpoint().to_payload()
    payload["features"] = {**payload["features"], "static_covariates": ["region"]}
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="checkpoint features has fields this seqcast does not know: static"):
        load_checkpoint(tmp_path / "c.pt")
