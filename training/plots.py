"""Pictures of an evaluation: forecast against actual, and what the hidden state tracks."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; training machines have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.forecaster import ForecasterConfig  # noqa: E402
from training.evaluate import SeriesForecasts  # noqa: E402


def plot_forecasts(
    forecasts: SeriesForecasts, config: ForecasterConfig, path: Path, baseline: str, origins: int = 7
) -> None:
    """The last ``origins`` test forecasts laid end to end over the actual series and the ``baseline``'s."""
    chosen = np.arange(max(0, len(forecasts.origins) - origins), len(forecasts.origins))
    horizon = forecasts.actual.shape[1]
    quantiles, mid = config.quantiles, config.point_index
    fig, ax = plt.subplots(figsize=(14, 4.5))
    stamps = forecasts.series.timestamps
    for n, i in enumerate(chosen):
        o = forecasts.origins[i]
        when = stamps[o + 1 : o + 1 + horizon]
        label = n == 0
        ax.plot(when, forecasts.actual[i], color="black", lw=1.2, label="actual" if label else None)
        ax.plot(when, forecasts.streaming[i, :, mid], color="tab:blue", label="seqcast (streaming)" if label else None)
        ax.plot(
            when,
            forecasts.baselines[baseline][i],
            color="tab:gray",
            ls="--",
            lw=0.9,
            label=baseline.replace("_", " ") if label else None,
        )
        if len(quantiles) >= 2:
            ax.fill_between(
                when,
                forecasts.streaming[i, :, 0],
                forecasts.streaming[i, :, -1],
                color="tab:blue",
                alpha=0.2,
                label=f"{quantiles[0]:g}-{quantiles[-1]:g} interval" if label else None,
            )
    ax.set_title(f"{forecasts.series.uid}: forecasts from the last {len(chosen)} test origins")
    ax.set_ylabel("target")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def daily_cycle_strength(hidden: np.ndarray, season: int) -> np.ndarray:
    """Share of each unit's variance at the seasonal frequency; hidden (T, units) -> (units,)."""
    centred = hidden - hidden.mean(axis=0)
    power = np.abs(np.fft.rfft(centred, axis=0)) ** 2  # (T // 2 + 1, units)
    cycles = len(hidden) // season
    # Sum the bins next to the exact frequency too: a window rarely holds a whole number of cycles.
    band = power[max(1, cycles - 1) : cycles + 2].sum(axis=0)
    return band / np.maximum(power[1:].sum(axis=0), 1e-12)


def plot_hidden_state(forecasts: SeriesForecasts, season: int, path: Path, steps: int = 7 * 48) -> None:
    """Heat map of the top-layer hidden units over the start of the test part, units ordered by how much
    they follow the seasonal (daily) cycle."""
    start = forecasts.origins[0] + 1 if len(forecasts.origins) else 0
    window = forecasts.hidden[start : start + steps]
    strength = daily_cycle_strength(window, season) if season > 1 else np.zeros(window.shape[1])
    order = np.argsort(-strength)
    fig, (ax, side) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [6, 1]}, sharey=True)
    image = ax.imshow(window[:, order].T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    stamps = forecasts.series.timestamps[start : start + len(window)]
    ticks = np.arange(0, len(window), max(1, season))
    ax.set_xticks(ticks, [stamps[int(t)].strftime("%a %d %b") for t in ticks], rotation=30, ha="right")
    ax.set_ylabel("hidden unit (strongest daily cycle first)")
    ax.set_title("top-layer hidden state over the test part")
    fig.colorbar(image, ax=ax, fraction=0.03)
    side.barh(np.arange(len(order)), strength[order], color="tab:orange")
    side.set_xlabel("daily-cycle share")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
