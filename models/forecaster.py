"""One recurrent forecaster for every cell type, with a direct multi-step head.

The recurrent part reads inputs shaped (batch, seq_len, input_dim) and can resume from a carried state, so
reading a history in pieces gives exactly the forecast of reading it at once. The head maps the hidden
output of each step, together with the known-ahead features of the steps it forecasts (future covariates,
calendar), to the next ``horizon`` values (one per quantile). Training can then put a loss on every step of
a long chunk ("forking sequences") and the service answers from the last step alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

Cell = Literal["lstm", "gru", "rnn"]
# LSTM carries (hidden, cell); GRU and RNN carry hidden alone; each is (num_layers, B, hidden_size). See
# state_rows for the lagged outputs and the last season of targets a model may carry as well.
State = tuple[torch.Tensor, ...]
Steps = TypeVar("Steps", torch.Tensor, nn.utils.rnn.PackedSequence)


@dataclass(frozen=True)
class ForecasterConfig:
    input_dim: int  # features per time step: scaled target, covariates, calendar features
    horizon: int  # steps forecast from each origin
    future_dim: int = 0  # known-ahead features per horizon step that the head conditions on
    cell: Cell = "lstm"
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0  # between stacked layers, as torch applies it
    nonlinearity: Literal["tanh", "relu"] = "tanh"  # plain RNN only; relu gets identity recurrent weights
    quantiles: tuple[float, ...] = ()  # empty: one point forecast per step
    head_hidden: int = 0  # width of an MLP layer in the head; 0 for a single linear map
    # 0: the head reads the hidden output and every horizon step's known-ahead features at once. Above 0: the
    # hidden output is first mapped to a context of this size per horizon step, and one head shared by all
    # steps reads each step's context with that step's own features (the MQ-RNN decoder). Sharing lets
    # what is learnt about, say, temperature at one step serve every other step.
    context_size: int = 0
    # With a shared head (context_size > 0): each horizon step also reads the top-layer output from one
    # horizon before it, the same time yesterday for a day-ahead model, as NeuralForecast's recurrent
    # models decode. The state then carries the last ``horizon`` outputs.
    lagged_outputs: bool = False
    # The head forecasts changes from the last observed target (input column 0), which are added back: a level
    # outside what training saw, as a trending series reaches, is then no harder to forecast than a known one.
    change_from_last: bool = False
    # Steps in one season (168 for hourly data with a weekly pattern). The recurrence then also reads each step's
    # change from a season before, and the head forecasts what a seasonal statistical forecast misses: each
    # step's value a season before, plus the latest change from a season before times a coefficient per horizon
    # step (``seasonal_carry``: least squares on the training data, then learnt with the network). At 0 that
    # forecast is the seasonal naive; at 1 the seasonal random walk's, ARIMA(0,1,0)(0,1,0). The network learns
    # how this week differs from the last, not the pattern itself (the deseasonalising idea of Smyl's ES-RNN,
    # with the season as observed rather than smoothed). The state carries the last season and one step of
    # targets.
    seasonal_lag: int = 0
    # With seasonal_lag: seasons (each at most seasonal_lag; a day and a week of half-hours are [48, 336]) whose
    # usual step-to-step changes are learnt by exponential smoothing, one profile of changes per season, each
    # fitting what the longer ones leave. The head's anchor is then the last value plus the smoothed changes
    # of the steps ahead, Holt-Winters' double-seasonal smoothing (Taylor, 2003) in changes: last season's
    # values, one noisy observation each, no longer set the forecast. Each season's rate (``season_rates``) is
    # fitted to the training data before training and kept; a season's first rounds are averaged, so a fresh
    # state is usable after one season. The head starts at zero, so training starts at the statistical
    # forecast. The state also carries the profiles and a count of steps read.
    smoothed_seasons: tuple[int, ...] = ()
    # With smoothed_seasons: the network sees no level, only changes. The recurrence reads each step's change
    # from the one before in place of the scaled target (0 for a fresh state's first step), and the head reads
    # each step's smoothed forecast less the first step's. The smoothing carries the level; what the network
    # learns then holds at levels training never saw, as a warm spell in winter or a grown business, rather
    # than steering them back to the levels it saw (the level normalisation of Smyl's ES-RNN).
    level_free: bool = False
    # With smoothed_seasons: forecasts start from a smoothed level rather than the last value. Each step's level
    # is its value times ``level_rate`` plus, for the rest, the last level and the change the profiles expected
    # (Holt-Winters' level, in changes). The last value of a noisy series, a month of wine sales, then no longer
    # shifts the whole forecast; at rate 1 the level is the last value. The rate is fitted with the seasons'.
    # The state carries the level.
    smoothed_level: bool = False

    def __post_init__(self) -> None:
        if self.cell not in ("lstm", "gru", "rnn"):
            raise ValueError(f"cell must be lstm, gru or rnn, got {self.cell!r}")
        if self.context_size < 0:
            raise ValueError(f"context_size must be >= 0, got {self.context_size}")
        if self.lagged_outputs and not self.context_size:
            raise ValueError("lagged_outputs needs a shared head (context_size > 0)")
        if self.seasonal_lag < 0:
            raise ValueError(f"seasonal_lag must be >= 0, got {self.seasonal_lag}")
        if self.seasonal_lag and self.seasonal_lag < self.horizon:
            raise ValueError(
                f"seasonal_lag ({self.seasonal_lag}) must be at least the horizon ({self.horizon}): every step "
                "forecast is a change from an observed one a season before it"
            )
        if self.seasonal_lag and self.change_from_last:
            raise ValueError("change_from_last and seasonal_lag each set what the head adds to; choose one")
        object.__setattr__(self, "smoothed_seasons", tuple(int(m) for m in self.smoothed_seasons))
        if self.smoothed_seasons and (
            not self.seasonal_lag
            or list(self.smoothed_seasons) != sorted(set(self.smoothed_seasons))
            or self.smoothed_seasons[0] < self.horizon
            or self.smoothed_seasons[-1] > self.seasonal_lag
        ):
            raise ValueError(
                f"smoothed_seasons must be increasing seasons from the horizon ({self.horizon}) to seasonal_lag "
                f"({self.seasonal_lag}), and need seasonal_lag; got {list(self.smoothed_seasons)}"
            )
        if self.level_free and not self.smoothed_seasons:
            raise ValueError("level_free needs smoothed_seasons: the smoothing carries the level it hides")
        if self.smoothed_level and not self.smoothed_seasons:
            raise ValueError("smoothed_level needs smoothed_seasons: the level moves by their expected changes")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be tanh or relu, got {self.nonlinearity!r}")
        if self.nonlinearity == "relu" and self.cell != "rnn":
            raise ValueError(f"nonlinearity='relu' applies to cell='rnn' only, got cell={self.cell!r}")
        for q in self.quantiles:
            if not 0.0 < q < 1.0:
                raise ValueError(f"quantiles must lie in (0, 1), got {q}")
        if list(self.quantiles) != sorted(set(self.quantiles)):
            raise ValueError(f"quantiles must be strictly increasing, got {self.quantiles}")
        # A tuple survives a round trip through JSON, YAML or a checkpoint as a list.
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))

    @property
    def outputs_per_step(self) -> int:
        return max(1, len(self.quantiles))

    @property
    def point_index(self) -> int:
        """Which output is the point forecast: the quantile nearest the median, or the only one."""
        return min(range(len(self.quantiles)), key=lambda i: abs(self.quantiles[i] - 0.5)) if self.quantiles else 0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["quantiles"] = list(self.quantiles)
        # Left out when unused, so that a model without them stays readable by versions before the fields.
        if not self.seasonal_lag:
            del data["seasonal_lag"]
        data["smoothed_seasons"] = list(self.smoothed_seasons)
        if not self.smoothed_seasons:
            del data["smoothed_seasons"]
        if not self.level_free:
            del data["level_free"]
        if not self.smoothed_level:
            del data["smoothed_level"]
        return data

    @property
    def seasonal_width(self) -> int:
        """How many values a state carries for the seasonal parts: the last season and one step of targets, then
        with ``smoothed_seasons`` each season's profile of changes, the level with ``smoothed_level``, and the
        count of steps read."""
        if not self.seasonal_lag:
            return 0
        smoothed = sum(self.smoothed_seasons) + int(self.smoothed_level) + 1 if self.smoothed_seasons else 0
        return self.seasonal_lag + 1 + smoothed


def _build_rnn(config: ForecasterConfig) -> nn.LSTM | nn.GRU | nn.RNN:
    common = dict(
        input_size=config.input_dim + (1 if config.seasonal_lag else 0),  # the seasonal change is read too
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
        batch_first=True,
    )
    if config.cell == "lstm":
        return nn.LSTM(**common)  # type: ignore[arg-type]
    if config.cell == "gru":
        return nn.GRU(**common)  # type: ignore[arg-type]
    rnn = nn.RNN(nonlinearity=config.nonlinearity, **common)  # type: ignore[arg-type]
    if config.nonlinearity == "relu":
        # IRNN (Le et al., 2015): identity recurrence keeps relu activations from vanishing or exploding
        # at initialisation.
        for layer in range(config.num_layers):
            nn.init.eye_(getattr(rnn, f"weight_hh_l{layer}"))
            nn.init.zeros_(getattr(rnn, f"bias_hh_l{layer}"))
    return rnn


class Forecaster(nn.Module):
    """Recurrent encoder plus direct multi-step head.

    Shapes:
        x: (B, T, input_dim)
        future: (B, horizon, future_dim) for ``forward``; (B, T, horizon, future_dim) to decode every step
        state: tuple of (num_layers, B, hidden_size) tensors
        forecast from ``forward``: (B, horizon, outputs_per_step), read from the last step
        forecasts from ``decode(readout(encode(x)[0]), future, anchor(x))``: (B, T, horizon, outputs_per_step),
            one per step
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = _build_rnn(config)
        if config.context_size:
            self.context = nn.Linear(config.hidden_size, config.horizon * config.context_size)
            head_in, out = config.context_size + config.future_dim, config.outputs_per_step
            head_in += config.hidden_size if config.lagged_outputs else 0
            head_in += 1 if config.seasonal_lag else 0  # each step's seasonal forecast
        else:
            head_in = config.hidden_size + config.horizon * config.future_dim
            head_in += config.horizon if config.seasonal_lag else 0
            out = config.horizon * config.outputs_per_step
        last = nn.Linear(config.head_hidden or head_in, out)
        if config.head_hidden > 0:
            self.head: nn.Module = nn.Sequential(nn.Linear(head_in, config.head_hidden), nn.GELU(), last)
        else:
            self.head = last
        if config.seasonal_lag and not config.smoothed_seasons:
            self.seasonal_carry = nn.Parameter(torch.zeros(config.horizon))
        if config.smoothed_seasons:
            self.season_rates: torch.Tensor
            self.register_buffer("season_rates", torch.full((len(config.smoothed_seasons),), 0.2))
        if config.smoothed_seasons or config.change_from_last:
            # The untrained model forecasts its anchor alone (the smoothing, or the last value): training starts
            # there, and a fit that no epoch improves on validation keeps it (training.cli untrained_baseline).
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        if config.smoothed_level:
            self.level_rate: torch.Tensor
            self.register_buffer("level_rate", torch.ones(()))

    def encode(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Runs the recurrence; returns every step's top-layer output (B, T, hidden) and the new state."""
        if x.dim() != 3 or x.shape[-1] != self.config.input_dim:
            raise ValueError(f"x must be (batch, seq_len, {self.config.input_dim}), got {tuple(x.shape)}")
        rnn_state, carried, season = self._parts(state, x.shape[0])
        if self.config.seasonal_lag:
            x, season = self._read_season(x, season)
        outputs, new_state = self._recur(x, rnn_state)
        if self.config.lagged_outputs:
            horizon = self.config.horizon
            recent = torch.cat([carried.transpose(0, 1), outputs[:, -horizon:]], dim=1)[:, -horizon:]
            new_state = (*new_state, recent.transpose(0, 1))
        return outputs, self._with_season(new_state, season)

    def _recur(self, x: Steps, state: State | None) -> tuple[Steps, State]:
        """The recurrent layers alone: their outputs, packed where the input is, and their state."""
        if isinstance(self.rnn, nn.LSTM):
            outputs, (h, c) = self.rnn(x, None if state is None else (state[0], state[1]))
            return outputs, (h, c)
        outputs, h = self.rnn(x, None if state is None else state[0])
        return outputs, (h,)

    def _parts(self, state: State | None, batch_size: int) -> tuple[State | None, torch.Tensor, torch.Tensor]:
        """A state's recurrent tensors (None for a fresh state), its lagged outputs (horizon, B, hidden) and its
        seasonal parts (B, seasonal_width; see ForecasterConfig.seasonal_width), zeros where the state is fresh
        or the config carries none."""
        fresh = state is None
        state = self.zero_state(batch_size) if state is None else state
        recurrent = 2 if self.config.cell == "lstm" else 1
        rows = state_rows(self.config)
        carried = state[recurrent] if self.config.lagged_outputs else state[0].new_zeros(0)
        season = state[0].new_zeros(batch_size, 0)
        if self.config.seasonal_lag:
            packed = state[-1].transpose(0, 1).reshape(batch_size, rows[-1] * self.config.hidden_size)
            season = packed[:, : self.config.seasonal_width]
        return None if fresh else state[:recurrent], carried, season

    def _with_season(self, state: State, season: torch.Tensor) -> State:
        """``state`` with its seasonal parts (B, seasonal_width) appended, packed hidden_size to a row."""
        if not self.config.seasonal_lag:
            return state
        rows = state_rows(self.config)[-1]
        padded = nn.functional.pad(season, (0, rows * self.config.hidden_size - season.shape[1]))
        return (*state, padded.unflatten(1, (rows, self.config.hidden_size)).transpose(0, 1))

    def anchor(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor | None:
        """What the head's forecasts are changes from, at each step of ``x`` (B, T, input_dim) read from
        ``state``: with ``change_from_last`` the step's scaled target (B, T); with ``seasonal_lag`` the seasonal
        forecast of each horizon step (B, T, horizon); otherwise None."""
        if self.config.change_from_last:
            return x[..., 0]
        if not self.config.seasonal_lag:
            return None
        _, _, season = self._parts(state, x.shape[0])
        if self.config.smoothed_seasons:
            return self._smooth(x[..., 0], season, record=True)[0]
        m, steps = self.config.seasonal_lag, x.shape[1]
        targets = torch.cat([season, x[..., 0]], dim=1)  # (B, m + 1 + T): step t's target at m + 1 + t
        # Horizon step k (from 1) of origin t is a season after step t + k - m, at index t + k + 1.
        before = targets[:, 2:].unfold(1, self.config.horizon, 1)[:, :steps]
        return self._seasonal_forecast(before, targets[:, m + 1 :] - targets[:, 1 : steps + 1])

    def _read_season(
        self, x: torch.Tensor, season: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, T, D) with each step's change from a season before appended, and the seasonal parts after
        it (at each sequence's own length where ``lengths`` says how many steps are real)."""
        m = self.config.seasonal_lag
        x_read, targets = with_seasonal_change(x, season[:, : m + 1], lengths)
        if not self.config.smoothed_seasons:
            return x_read, targets
        _, smoothed, count = self._smooth(x[..., 0], season, lengths)
        if self.config.level_free:
            # Changes from before a fresh state's first step would be changes from zeros, that is levels.
            before = season[:, -1:] + torch.arange(x.shape[1], device=x.device)  # steps read before each
            previous = torch.cat([season[:, m : m + 1], x[:, :-1, 0]], dim=1)
            step_change = torch.where(before > 0, x[..., 0] - previous, 0.0)
            seasonal_change = torch.where(before >= m, x_read[..., -1], 0.0)
            x_read = torch.cat([step_change[..., None], x_read[..., 1:-1], seasonal_change[..., None]], dim=-1)
        return x_read, torch.cat([targets, smoothed, count.unsqueeze(1)], dim=1)

    @torch.no_grad()
    def _smooth(
        self, targets: torch.Tensor, season: torch.Tensor, lengths: torch.Tensor | None = None, record: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Reads scaled ``targets`` (B, T) into the smoothed profiles of changes (and level) that ``season``
        carries (see ``smoothed_seasons``). Returns each step's smoothed forecast (B, T, horizon) if ``record``,
        and the profiles with the level (B, sum of seasons [+ 1]) and count of steps read (B,) after each
        sequence's last real step.

        A step's change updates the longest season's slot first, then each shorter one with what the longer
        ones still miss: in a slot's first round the longest season takes each change as it is, so one round
        of a season that repeats exactly forecasts it exactly. A profile is carried in the order of the steps
        ahead, slot 0 the next step's.
        """
        m, seasons, (batch, steps) = self.config.seasonal_lag, self.config.smoothed_seasons, targets.shape
        previous, count = season[:, m], season[:, -1]
        before = count.unsqueeze(1) + torch.arange(steps, device=targets.device)  # (B, T) steps read before each
        changes = targets - torch.cat([previous.unsqueeze(1), targets[:, :-1]], dim=1)
        # A slot's rate is at least one over the rounds of its season read, so its first rounds are averaged
        # rather than weighted towards a profile of zeros; a fresh state's first target has no change to learn
        # from. (A shorter season's first rounds, while the longest takes each change whole, learn nothing.)
        rates = [
            torch.where(before > 0, torch.maximum(rate, 1 / torch.ceil(before.clamp(min=1) / length)), 0.0)
            for rate, length in zip(self.season_rates, seasons, strict=True)
        ]
        # by_step[i][:, s] is season i's slot for step s as last updated before it, a season earlier (or as
        # carried in, for s below the season): what every origin from s - season to s - 1 reads for step s.
        by_step = [torch.cat([start, start.new_zeros(batch, steps)], dim=1) for start in self._profiles(season)]
        levels: list[torch.Tensor] = []
        level = season[:, -2]  # with smoothed_level, the level before the first step
        for t in range(steps):
            slots = [values[:, t] for values in by_step]
            if self.config.smoothed_level:  # a fresh state's first level is its first value
                rate = torch.where(before[:, t] > 0, self.level_rate, 1.0)
                level = rate * targets[:, t] + (1 - rate) * (level + sum(slots))
                levels.append(level)
            for i in reversed(range(len(seasons))):
                slots[i] = slots[i] + rates[i][:, t] * (changes[:, t] - sum(slots))
                by_step[i][:, seasons[i] + t] = slots[i]
        # A row's steps past its own length are computed too, but never read for it.
        read = torch.full((batch,), steps, device=targets.device) if lengths is None else lengths.to(targets.device)
        rows = torch.arange(batch, device=targets.device).unsqueeze(1)
        offsets = [torch.arange(length, device=targets.device) for length in seasons]
        smoothed = [values[rows, read.unsqueeze(1) + offset] for values, offset in zip(by_step, offsets, strict=True)]
        starts = torch.stack(levels, dim=1) if levels else targets  # (B, T) what each step's forecast starts from
        if self.config.smoothed_level:
            smoothed.append(starts[rows, read.unsqueeze(1) - 1])
        recorded = None
        if record:
            horizon = self.config.horizon  # at most the shortest season, so each step ahead is read as updated
            ahead = sum(values[:, 1 : steps + horizon].unfold(1, horizon, 1) for values in by_step)  # (B, T, H)
            recorded = starts.unsqueeze(-1) + torch.cumsum(ahead, dim=-1)  # type: ignore[arg-type]
        return recorded, torch.cat(smoothed, dim=1), (count + read).clamp(max=_COUNT_CAP)

    def smoothed_forecasts(self, targets: torch.Tensor) -> torch.Tensor:
        """(B, T, horizon): the smoothed forecast (see ``smoothed_seasons``) at every step of scaled ``targets``
        (B, T) read from a fresh state, as the head's anchor would be."""
        return self._smooth(targets, self._parts(None, targets.shape[0])[2], record=True)[0]  # type: ignore[return-value]

    def _profiles(self, season: torch.Tensor) -> list[torch.Tensor]:
        """Each smoothed season's profile of changes (B, season) in a state's seasonal parts (see seasonal_width)."""
        m, seasons = self.config.seasonal_lag, self.config.smoothed_seasons
        return list(season[:, m + 1 : m + 1 + sum(seasons)].split(seasons, dim=1))

    def _smoothed_forecast(self, last: torch.Tensor, profiles: list[torch.Tensor]) -> torch.Tensor:
        """(B, horizon): the last target or level (B,) plus the smoothed changes of the steps ahead."""
        ahead = torch.arange(self.config.horizon, device=last.device)
        changes = sum(p[:, ahead % length] for p, length in zip(profiles, self.config.smoothed_seasons, strict=True))
        return last.unsqueeze(1) + torch.cumsum(changes, dim=1)  # type: ignore[arg-type]

    def _seasonal_forecast(self, before: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """(..., horizon): the values a season before each horizon step (..., horizon), plus the latest change
        from a season before (...) times each step's coefficient."""
        return before + self.seasonal_carry * change.unsqueeze(-1)

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:
        """What the head reads at each step of outputs encoded from a zero state: the step's output
        (B, T, hidden) as it is, or with ``lagged_outputs`` the outputs of the last horizon steps
        (B, T, horizon, hidden), oldest first, zeros before the first step."""
        if not self.config.lagged_outputs:
            return outputs
        horizon = self.config.horizon
        earlier = outputs.new_zeros(outputs.shape[0], horizon - 1, outputs.shape[2])
        return torch.cat([earlier, outputs], dim=1).unfold(1, horizon, 1).transpose(-1, -2)

    def decode(
        self, readout: torch.Tensor, future: torch.Tensor | None = None, anchor: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Maps ``readout`` at some steps, (..., hidden) or (..., horizon, hidden), the horizon's known-ahead
        features (..., horizon, future_dim) and, with ``change_from_last`` or ``seasonal_lag``, the ``anchor``
        at those steps to forecasts (..., horizon, outputs_per_step). A seasonal head also reads its anchor, each
        step's seasonal forecast: it can then learn how far to trust it, as where last week's counts were noise."""
        config = self.config
        if not (config.change_from_last or config.seasonal_lag):
            return self._head(readout, future)
        latest = readout[..., -1, :] if config.lagged_outputs else readout
        expected = (*latest.shape[:-1], config.horizon) if config.seasonal_lag else latest.shape[:-1]
        if anchor is None or anchor.shape != expected:
            got = None if anchor is None else tuple(anchor.shape)
            raise ValueError(f"anchor must be {tuple(expected)}, what each step read forecasts changes from, got {got}")
        if config.seasonal_lag:
            seen = anchor - anchor[..., :1] if config.level_free else anchor
            return self._head(readout, future, seen) + anchor[..., None]
        return self._head(readout, future) + anchor[..., None, None]

    def _head(
        self, readout: torch.Tensor, future: torch.Tensor | None, seasonal: torch.Tensor | None = None
    ) -> torch.Tensor:
        config = self.config
        latest = readout[..., -1, :] if config.lagged_outputs else readout
        if config.future_dim:
            expected = (*latest.shape[:-1], config.horizon, config.future_dim)
            if future is None or tuple(future.shape) != expected:
                got = None if future is None else tuple(future.shape)
                raise ValueError(f"future must be {expected} (..., horizon, future_dim), got {got}")
        if config.context_size:
            steps = self.context(latest).unflatten(-1, (config.horizon, config.context_size))  # (..., H, C)
            if config.lagged_outputs:
                steps = torch.cat([steps, readout], dim=-1)  # (..., H, C + hidden)
            if future is not None and config.future_dim:
                steps = torch.cat([steps, future], dim=-1)  # (..., H, C [+ hidden] + future_dim)
            if seasonal is not None:
                steps = torch.cat([steps, seasonal.unsqueeze(-1)], dim=-1)  # (..., H, ... + 1)
            return self.head(steps)  # (..., H, outputs_per_step)
        if future is not None and config.future_dim:
            latest = torch.cat([latest, future.flatten(-2)], dim=-1)  # (..., hidden + horizon * future_dim)
        if seasonal is not None:
            latest = torch.cat([latest, seasonal], dim=-1)  # (..., ... + horizon)
        return self.head(latest).unflatten(-1, (config.horizon, config.outputs_per_step))

    def forward(
        self, x: torch.Tensor, state: State | None = None, future: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Forecast from the last step; future: (B, horizon, future_dim) when the model has future features."""
        with _single_step_kernels(x.shape[1] == 1):
            outputs, new_state = self.encode(x, state)
            _, recent, season = self._parts(new_state, len(x))
            return self._decode_last(outputs[:, -1], x[:, -1, 0], recent, season, future), new_state

    def _decode_last(
        self,
        last_output: torch.Tensor,
        last_target: torch.Tensor,
        recent: torch.Tensor,
        season: torch.Tensor,
        future: torch.Tensor | None,
    ) -> torch.Tensor:
        """The forecast from a sequence's last step, given its top-layer output and scaled target there, and the
        lagged outputs and season that the state after it carries (see _parts)."""
        # The lagged outputs ending at the last step are exactly what the new state carries.
        readout = recent.transpose(0, 1) if self.config.lagged_outputs else last_output
        if not self.config.seasonal_lag:
            return self.decode(readout, future, last_target)
        if self.config.smoothed_seasons:
            last = season[:, -2] if self.config.smoothed_level else season[:, self.config.seasonal_lag]
            return self.decode(readout, future, self._smoothed_forecast(last, self._profiles(season)))
        # The season holds targets t - m to t: step k's value a season before is at k, the latest change is
        # the last less the first.
        anchor = self._seasonal_forecast(season[:, 1 : self.config.horizon + 1], season[:, -1] - season[:, 0])
        return self.decode(readout, future, anchor)

    def forward_ragged(
        self, sequences: list[torch.Tensor], state: State | None = None, future: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """One pass over sequences of different lengths, as if each ran alone from its own state.

        sequences: B tensors (T_i, input_dim), T_i >= 1; state: per-sequence initial states stacked on the
        batch axis; future: (B, horizon, future_dim). Returns forecasts (B, horizon, outputs_per_step) read
        at each sequence's own last step, and each sequence's state after it.
        """
        steps = [len(s) for s in sequences]
        with _single_step_kernels(max(steps) == 1):
            return self._forward_ragged(sequences, torch.tensor(steps), state, future)

    def _forward_ragged(
        self, sequences: list[torch.Tensor], lengths: torch.Tensor, state: State | None, future: torch.Tensor | None
    ) -> tuple[torch.Tensor, State]:
        outputs: torch.Tensor | nn.utils.rnn.PackedSequence
        rnn_state, carried, season = self._parts(state, len(sequences))
        if bool((lengths == lengths[0]).all()):
            # One length, as when every observe brings one value: packing would cost a third of the pass.
            stacked = torch.stack(sequences)  # (B, T, input_dim)
            last = stacked[:, -1, 0]
            if self.config.seasonal_lag:
                stacked, season = self._read_season(stacked, season)
            outputs, new_state = self._recur(stacked, rnn_state)
        else:
            padded = nn.utils.rnn.pad_sequence(sequences, batch_first=True)  # (B, max T_i, input_dim)
            last = padded[torch.arange(len(sequences)), lengths - 1, 0]
            if self.config.seasonal_lag:
                padded, season = self._read_season(padded, season, lengths)
            packed = nn.utils.rnn.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
            outputs, new_state = self._recur(packed, rnn_state)
        if self.config.lagged_outputs:
            if isinstance(outputs, nn.utils.rnn.PackedSequence):
                outputs = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)[0]  # (B, max T_i, hidden)
            horizon, rows = self.config.horizon, torch.arange(len(sequences)).unsqueeze(1)
            joined = torch.cat([carried.transpose(0, 1), outputs], dim=1)  # (B, horizon + max T_i, hidden)
            # (horizon, B, hidden): each sequence's last horizon outputs
            recent = joined[rows, lengths.unsqueeze(1) + torch.arange(horizon)].transpose(0, 1)
            new_state = (*new_state, recent)
        else:
            recent = carried  # empty: the config carries no lagged outputs
        new_state = self._with_season(new_state, season)
        # The final hidden state is taken at each sequence's own length (packing sees to that), and the top
        # layer's final hidden state is that step's output.
        return self._decode_last(new_state[0][-1], last, recent, season, future), new_state

    def zero_state(self, batch_size: int) -> State:
        param = next(self.parameters())
        return tuple(
            torch.zeros((rows, batch_size, self.config.hidden_size), dtype=param.dtype, device=param.device)
            for rows in state_rows(self.config)
        )


def with_seasonal_change(
    x: torch.Tensor, season: torch.Tensor, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (B, T, D) with each step's change from a season before appended as a last column, read against the
    targets before it (B, m + 1); and the m + 1 targets after it (at each sequence's own length, where
    ``lengths`` says how many of the T steps are real)."""
    kept = season.shape[1]  # m + 1
    targets = torch.cat([season, x[..., 0]], dim=1)  # (B, m + 1 + T): step t's target at m + 1 + t
    change = x[..., 0] - targets[:, 1 : x.shape[1] + 1]
    if lengths is None:
        after = targets[:, -kept:]
    else:
        after = targets[torch.arange(len(x)).unsqueeze(1), lengths.unsqueeze(1) + torch.arange(kept)]
    return torch.cat([x, change.unsqueeze(-1)], dim=-1), after


# Steps read, as a smoothed state counts them: only the first rounds of a season matter, and float32 holds whole
# numbers exactly to 2**24.
_COUNT_CAP = 2.0**20


@contextmanager
def _single_step_kernels(single_step: bool) -> Iterator[None]:
    """Runs a pass of one step on torch's own CPU kernels rather than oneDNN's.

    On CPU torch runs the LSTM (and GELU) through oneDNN, whose every call pays a setup cost: ~80 us per LSTM
    pass at hidden 64, ~300 us at 256. Over hundreds of steps oneDNN is 6x faster; for the single step of an
    observe at batch sizes up to 8 it is 2-3x slower, and no faster at 64. The switch is process-wide while it
    lasts, so a pass on another thread meanwhile runs on torch's kernels too: slower, never wrong.
    """
    if not single_step or not torch.backends.mkldnn.enabled:
        yield
        return
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # a settable module property
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = True  # type: ignore[assignment]


def state_rows(config: ForecasterConfig) -> tuple[int, ...]:
    """The first dimension of each tensor a state of this config carries; each is (rows, B, hidden_size).

    LSTM carries hidden and cell states, GRU and RNN the hidden state alone, each one row per layer; with
    ``lagged_outputs`` the last ``horizon`` top-layer outputs follow; with ``seasonal_lag`` the seasonal parts
    (``ForecasterConfig.seasonal_width``), hidden_size to a row, the last row padded with zeros.
    """
    rows = (config.num_layers,) * (2 if config.cell == "lstm" else 1)
    rows += (config.horizon,) if config.lagged_outputs else ()
    return (*rows, -(-config.seasonal_width // config.hidden_size)) if config.seasonal_lag else rows
