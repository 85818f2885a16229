from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models import Forecaster, ForecasterConfig
from models.forecaster import state_rows

CELLS = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]
# (cell, context_size, lagged_outputs, seasonal_lag): the plain head, the shared head, the shared head reading
# lagged outputs, and either forecasting changes from a season before (a season shorter and longer than a row)
HEADS = [
    ("lstm", 0, False, 0),
    ("gru", 0, False, 0),
    ("rnn", 0, False, 0),
    ("lstm", 3, False, 0),
    ("lstm", 3, True, 0),
    ("gru", 3, True, 0),
    ("lstm", 0, False, 5),
    ("gru", 3, True, 19),
    ("lstm", 3, True, (9, (4, 9))),  # smoothed profiles of 4 and 9 steps: three rows of the state
    ("gru", 3, True, (9, (4, 9), True)),  # ...read level-free
    ("gru", 3, True, (9, (4, 9), True, True)),  # ...from a smoothed level
]


Season = int | tuple[int, tuple[int, ...]] | tuple[int, tuple[int, ...], bool] | tuple[int, tuple[int, ...], bool, bool]


def _seasonal(season: Season) -> dict[str, object]:
    """Config fields for a season given as its length, as (length, smoothed seasons), or as (length, smoothed
    seasons, level_free[, smoothed_level])."""
    fields = (*season, False, False)[:4] if isinstance(season, tuple) else (season, (), False, False)
    lag, smoothed, level_free, level = fields
    return {"seasonal_lag": lag, "smoothed_seasons": smoothed, "level_free": level_free, "smoothed_level": level}


def _carrying(model: Forecaster) -> Forecaster:
    """``model`` with random seasonal coefficients where it has them: zeros (a carry, a smoothed model's head)
    would hide the seasonal part its state carries."""
    with torch.no_grad():
        if model.config.smoothed_seasons:
            model.season_rates.uniform_(0.05, 0.6)
            if model.config.smoothed_level:
                model.level_rate.fill_(0.4)
            for parameter in model.head.parameters():
                parameter.normal_(0, 0.3)
        elif model.config.seasonal_lag:
            model.seasonal_carry.normal_()
    return model


@pytest.mark.parametrize(
    ("cell", "nonlinearity", "lagged", "season"),
    [(*c, False, 0) for c in CELLS]
    + [("lstm", "tanh", True, 0), ("gru", "tanh", True, 0), ("lstm", "tanh", True, 24), ("rnn", "tanh", False, 7)]
    + [("gru", "tanh", True, (24, (6, 24))), ("lstm", "tanh", False, (7, (7,)))]
    + [("gru", "tanh", True, (24, (6, 24), True)), ("lstm", "tanh", False, (7, (7,), True))]
    + [("gru", "tanh", True, (24, (6, 24), True, True)), ("lstm", "tanh", False, (7, (7,), False, True))],
)
def test_carried_state_equals_one_pass(cell: str, nonlinearity: str, lagged: bool, season: Season) -> None:
    torch.manual_seed(0)
    config = ForecasterConfig(
        input_dim=4,
        horizon=6,
        cell=cell,
        nonlinearity=nonlinearity,
        hidden_size=16,
        num_layers=2,  # type: ignore[arg-type]
        dropout=0.2,
        quantiles=(0.1, 0.5, 0.9),
        head_hidden=8,
        context_size=5 if lagged else 0,
        lagged_outputs=lagged,
        **_seasonal(season),  # type: ignore[arg-type]
    )
    model = _carrying(Forecaster(config).eval())
    x = torch.randn(3, 97, 4)
    full, full_state = model(x)
    for split in (1, 13, 50, 96):
        first, state = model(x[:, :split])
        second, second_state = model(x[:, split:], state)
        torch.testing.assert_close(second, full, atol=1e-5, rtol=1e-5)
        for a, b in zip(second_state, full_state, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert full.shape == (3, 6, 3)
    assert [len(s) for s in full_state] == list(state_rows(config))
    assert len(full_state) == (2 if cell == "lstm" else 1) + lagged + bool(season)


@pytest.mark.parametrize(
    ("lagged", "season"),
    [(False, 0), (True, 0), (False, 7), (True, 12), (True, (12, (6, 12))), (False, (7, (7,)))]
    + [(True, (12, (6, 12), True)), (True, (12, (6, 12), False, True))],
)
def test_every_step_forecasts_match_last_step_forecast(lagged: bool, season: Season) -> None:
    config = ForecasterConfig(
        input_dim=2,
        horizon=5,
        context_size=3 if lagged else 0,
        lagged_outputs=lagged,
        **_seasonal(season),  # type: ignore[arg-type]
    )
    model = _carrying(Forecaster(config).eval())
    x = torch.randn(2, 30, 2)
    every = model.decode(model.readout(model.encode(x)[0]), None, model.anchor(x))  # what training puts its loss on
    last, _ = model(x)
    assert every.shape == (2, 30, 5, 1)
    torch.testing.assert_close(every[:, -1], last)
    # The forecast at step t reads nothing after t.
    prefix, _ = model(x[:, :11])
    torch.testing.assert_close(every[:, 10], prefix)


def test_a_seasonal_head_that_adds_nothing_forecasts_the_seasonal_statistics() -> None:
    """With the head's output zeroed, the forecast is, from the state alone and in scaled units, the seasonal
    naive at carry 0 and the seasonal random walk at carry 1: the value a season before, plus the latest change
    from a season before."""
    config = ForecasterConfig(input_dim=2, horizon=4, hidden_size=8, seasonal_lag=10)
    model = Forecaster(config).eval()
    for parameter in model.head.parameters():
        torch.nn.init.zeros_(parameter)
    x = torch.randn(3, 25, 2)
    _, state = model(x[:, :20])
    forecast, _ = model(x[:, 20:], state)
    torch.testing.assert_close(forecast[..., 0], x[:, 15:19, 0])  # steps 25-28, a season of 10 after 15-18
    with torch.no_grad():
        model.seasonal_carry.fill_(1.0)
    walk, _ = model(x[:, 20:], state)
    change = x[:, 24, 0] - x[:, 14, 0]
    torch.testing.assert_close(walk[..., 0], x[:, 15:19, 0] + change[:, None])


def _smoothed_reference(
    z: np.ndarray, seasons: tuple[int, ...], rates: tuple[float, ...], horizon: int, level_rate: float = 1.0
) -> np.ndarray:
    """(T, horizon): the smoothed seasonal forecast at each step of ``z``, one step at a time, each profile a ring
    indexed by time: double-seasonal Holt-Winters in changes, with each slot's first rounds averaged, from a level
    smoothed at ``level_rate``."""
    profiles = [np.zeros(m) for m in seasons]
    out = np.zeros((len(z), horizon))
    level = z[0]
    for t in range(len(z)):
        if t:
            expected = sum(p[t % len(p)] for p in profiles)
            level = level_rate * z[t] + (1 - level_rate) * (level + expected)
            change = z[t] - z[t - 1]
            for i, m in reversed(list(enumerate(seasons))):
                rate = max(rates[i], 1 / np.ceil(t / m))  # t changes seen, this one included
                profiles[i][t % m] += rate * (change - sum(p[t % len(p)] for p in profiles))
        ahead = np.arange(t + 1, t + 1 + horizon)
        out[t] = level + np.cumsum(sum(p[ahead % len(p)] for p in profiles))
    return out


@pytest.mark.parametrize("level_rate", [None, 0.3], ids=["last-value", "smoothed-level"])
def test_a_smoothed_head_starts_at_double_seasonal_smoothing(level_rate: float | None) -> None:
    """A new smoothed model forecasts, before any training, what a plain per-step implementation of the smoothing
    does, at every step and from a carried state alike."""
    seasons, rates = (6, 15), (0.3, 0.1)
    fields = _seasonal((15, seasons, False, bool(level_rate)))
    model = Forecaster(ForecasterConfig(input_dim=2, horizon=4, hidden_size=8, **fields)).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        model.season_rates.copy_(torch.tensor(rates))
        if level_rate:
            model.level_rate.fill_(level_rate)
    x = torch.randn(2, 70, 2)
    every = model.decode(model.readout(model.encode(x)[0]), None, model.anchor(x))[..., 0]
    for row in range(2):
        expected = _smoothed_reference(x[row, :, 0].double().numpy(), seasons, rates, 4, level_rate or 1.0)
        np.testing.assert_allclose(every[row].detach().numpy(), expected, rtol=1e-4, atol=1e-4)
    _, state = model(x[:, :33])
    carried, _ = model(x[:, 33:], state)
    torch.testing.assert_close(carried[..., 0], every[:, -1])


@pytest.mark.parametrize("level_free", [True, False])
def test_a_level_free_network_moves_its_forecast_with_the_level(level_free: bool) -> None:
    """Shifting every target by a constant shifts a level-free model's forecasts by that constant, from a fresh
    state and a carried one alike: the network sees changes only. A model that reads levels does not."""
    torch.manual_seed(0)
    config = ForecasterConfig(
        input_dim=2,
        horizon=4,
        hidden_size=8,
        context_size=3,
        lagged_outputs=True,
        head_hidden=6,
        **_seasonal((12, (4, 12), level_free)),  # type: ignore[arg-type]
    )
    model = _carrying(Forecaster(config).eval())
    x = torch.randn(2, 40, 2)
    shifted = x.clone()
    shifted[..., 0] += 3.0
    _, state = model(x[:, :25])
    _, shifted_state = model(shifted[:, :25])
    pairs = [(model(x), model(shifted)), (model(x[:, 25:], state), model(shifted[:, 25:], shifted_state))]
    for (a, _), (b, _) in pairs:
        gap = (b - a - 3.0).abs().max().item()
        assert gap < 1e-4 if level_free else gap > 1e-2


def test_one_round_of_a_noiseless_season_forecasts_it_exactly() -> None:
    """Daily and weekly patterns and a trend, without noise, are forecast exactly once a week and a step are
    read: the first round of the longest season takes each change as it is."""
    config = ForecasterConfig(input_dim=1, horizon=5, hidden_size=8, seasonal_lag=21, smoothed_seasons=(7, 21))
    model = Forecaster(config).eval()
    t = torch.arange(60, dtype=torch.float32)
    z = torch.sin(2 * torch.pi * t / 7) + 0.5 * torch.cos(2 * torch.pi * t / 21) + 0.02 * t
    forecasts = model.smoothed_forecasts(z.unsqueeze(0))[0]  # (T, H)
    actual = z[22:55].unfold(0, 5, 1)[: 55 - 22 - 4]  # origins 21.. read steps 22..
    torch.testing.assert_close(forecasts[21 : 21 + len(actual)], actual, atol=1e-4, rtol=1e-4)


def test_relu_rnn_starts_with_identity_recurrence() -> None:
    model = Forecaster(ForecasterConfig(input_dim=2, horizon=1, cell="rnn", nonlinearity="relu", hidden_size=8))
    for name, weight in model.rnn.named_parameters():
        if name.startswith("weight_hh"):
            torch.testing.assert_close(weight, torch.eye(8))


def test_zero_state_is_the_default_state() -> None:
    model = Forecaster(ForecasterConfig(input_dim=3, horizon=2, cell="lstm")).eval()
    x = torch.randn(4, 12, 3)
    torch.testing.assert_close(model(x)[0], model(x, model.zero_state(4))[0])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cell": "transformer"}, "cell must be lstm, gru or rnn, got 'transformer'"),
        ({"cell": "lstm", "nonlinearity": "relu"}, "nonlinearity='relu' applies to cell='rnn' only"),
        ({"quantiles": (0.5, 1.5)}, "quantiles must lie in (0, 1), got 1.5"),
        ({"quantiles": (0.9, 0.1)}, "quantiles must be strictly increasing"),
        ({"context_size": -1}, "context_size must be >= 0, got -1"),
        ({"lagged_outputs": True}, "lagged_outputs needs a shared head (context_size > 0)"),
        ({"seasonal_lag": -1}, "seasonal_lag must be >= 0, got -1"),
        ({"horizon": 5, "seasonal_lag": 4}, "seasonal_lag (4) must be at least the horizon (5)"),
        ({"seasonal_lag": 3, "change_from_last": True}, "change_from_last and seasonal_lag each set"),
        ({"smoothed_seasons": (4,)}, "smoothed_seasons must be increasing seasons from the horizon (1) to"),
        ({"seasonal_lag": 8, "smoothed_seasons": (8, 4)}, "must be increasing seasons"),
        ({"horizon": 5, "seasonal_lag": 8, "smoothed_seasons": (4, 8)}, "from the horizon (5) to seasonal_lag (8)"),
        ({"seasonal_lag": 8, "smoothed_seasons": (4, 12)}, "from the horizon (1) to seasonal_lag (8)"),
        ({"seasonal_lag": 8, "level_free": True}, "level_free needs smoothed_seasons"),
    ],
)
def test_config_rejects_bad_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ForecasterConfig(**{"input_dim": 1, "horizon": 1, **fields})  # type: ignore[arg-type]


def test_wrong_input_width_is_named() -> None:
    model = Forecaster(ForecasterConfig(input_dim=3, horizon=2))
    with pytest.raises(ValueError, match=r"x must be \(batch, seq_len, 3\), got \(1, 5, 2\)"):
        model(torch.zeros(1, 5, 2))


@pytest.mark.parametrize(
    "lengths", [(5, 1, 17, 9), (3, 3, 3, 3), (1, 1, 1, 1)], ids=["ragged", "one-length", "single-step"]
)
@pytest.mark.parametrize(("cell", "context_size", "lagged", "season"), HEADS)
def test_ragged_batch_equals_each_sequence_alone(
    cell: str, context_size: int, lagged: bool, season: Season, lengths: tuple[int, ...]
) -> None:
    torch.manual_seed(1)
    config = ForecasterConfig(
        input_dim=3,
        horizon=4,
        future_dim=2,
        cell=cell,  # type: ignore[arg-type]
        hidden_size=8,
        context_size=context_size,
        lagged_outputs=lagged,
        **_seasonal(season),  # type: ignore[arg-type]
    )
    model = _carrying(Forecaster(config).eval())
    sequences = [torch.randn(n, 3) for n in lengths]  # ragged: shorter and longer than the horizon
    states = [model(torch.randn(1, 6, 3), future=torch.randn(1, 4, 2))[1] for _ in sequences]
    stacked = tuple(torch.cat(parts, dim=1) for parts in zip(*states, strict=True))
    future = torch.randn(4, 4, 2)
    forecast, new_state = model.forward_ragged(sequences, stacked, future)
    for i, (x, state) in enumerate(zip(sequences, states, strict=True)):
        alone, alone_state = model(x.unsqueeze(0), state, future[i : i + 1])
        torch.testing.assert_close(forecast[i : i + 1], alone, atol=1e-6, rtol=1e-5)
        for a, b in zip(new_state, alone_state, strict=True):
            torch.testing.assert_close(a[:, i : i + 1], b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("steps", "on_onednn"), [(1, False), (2, True)])
def test_single_step_passes_run_on_torchs_own_kernels(steps: int, on_onednn: bool) -> None:
    """oneDNN's setup per pass costs more than a single step computes (bench: streaming's in-process observe)."""
    model = Forecaster(ForecasterConfig(input_dim=3, horizon=2)).eval()
    seen: list[bool] = []
    model.rnn.register_forward_pre_hook(lambda module, args: seen.append(torch.backends.mkldnn.enabled))
    model(torch.randn(2, steps, 3))
    model.forward_ragged([torch.randn(steps, 3), torch.randn(steps, 3)])
    assert seen == [on_onednn, on_onednn]
    with pytest.raises(ValueError, match="x must be"):
        model(torch.zeros(1, steps, 2))
    assert torch.backends.mkldnn.enabled  # restored, also after a failed pass


def test_shared_decoder_reads_each_steps_own_future_features() -> None:
    torch.manual_seed(2)
    config = ForecasterConfig(input_dim=3, horizon=5, future_dim=2, hidden_size=8, context_size=4, head_hidden=6)
    model = Forecaster(config).eval()
    x, future = torch.randn(2, 9, 3), torch.randn(2, 5, 2)
    base, _ = model(x, future=future)
    changed = future.clone()
    changed[:, 3] += 1.0  # the temperature forecast for step 3 only
    moved = (model(x, future=changed)[0] - base).abs().sum(dim=(0, 2))  # change per horizon step
    assert moved[3] > 0
    assert torch.count_nonzero(moved) == 1
    assert model(x, future=future)[0].shape == (2, 5, 1)


@pytest.mark.parametrize("lengths", [(5, 1, 17, 9), (3, 3, 3, 3)], ids=["ragged", "one-length"])
def test_change_from_last_adds_the_last_observed_target_on_every_path(lengths: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    plain = ForecasterConfig(
        input_dim=3, horizon=4, future_dim=2, hidden_size=8, context_size=3, lagged_outputs=True, quantiles=(0.1, 0.9)
    )
    model = Forecaster(replace(plain, change_from_last=True)).eval()
    for parameter in model.head.parameters():  # the head starts at zero; weights of its own test every path
        torch.nn.init.normal_(parameter, std=0.5)
    reference = Forecaster(plain).eval()
    reference.load_state_dict(model.state_dict())
    sequences = [torch.randn(n, 3) for n in lengths]
    future = torch.randn(4, 4, 2)
    last = torch.stack([x[-1, 0] for x in sequences])
    ragged, _ = model.forward_ragged(sequences, None, future)
    torch.testing.assert_close(ragged, reference.forward_ragged(sequences, None, future)[0] + last[:, None, None])
    for i, x in enumerate(sequences):
        torch.testing.assert_close(model(x.unsqueeze(0), future=future[i : i + 1])[0], ragged[i : i + 1])
    x, every_future = torch.randn(1, 20, 3), torch.randn(1, 20, 4, 2)
    every = model.decode(model.readout(model.encode(x)[0]), every_future, model.anchor(x))  # what training reads
    torch.testing.assert_close(every[:, -1], model(x, future=every_future[:, -1])[0])
    with pytest.raises(ValueError, match="anchor must be"):
        model.decode(model.readout(model.encode(x)[0]), every_future)
