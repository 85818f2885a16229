"""``seqcast-train check``: what a config's data looks like to training, before any training.

Every problem of every series is listed at once (``training.data.check_series``); data that passes is
described as training will split and judge it.
"""

from __future__ import annotations

from models.features import fixed_step
from training.datamodule import SeriesDataModule
from training.evaluate import baseline_name, duration, method_label
from training.metrics import naive_seasons, season_length


def describe(data: SeriesDataModule) -> list[str]:
    """Lines saying what the data module read: series, frequency, what filling changed, the split and the
    baselines the export gate compares with. Raises DataError (every problem) for data it cannot train on."""
    data.setup()
    checked = data.checked
    assert checked is not None  # setup sets it
    lengths = [len(s) for s in data.series]
    freq = checked.freq
    step = fixed_step(freq)
    span = f" ({duration(step * min(lengths))} to {duration(step * max(lengths))})" if step else ""
    lines = [
        f"data {data.path}: {len(data.series)} series of {data.target!r} at frequency {freq}, "
        f"{min(lengths)} to {max(lengths)} points{span}",
    ]
    if checked.added_rows or checked.filled_values:
        lines.append(
            f"  filled with data.fill={data.fill} (covariates: data.fill_covariates={data.fill_covariates}): "
            f"{checked.added_rows} rows missing from the grid, "
            f"{checked.filled_values} values in all"
        )
    train = min(data.train_part(s).end for s in data.series)
    lines.append(
        f"  per series: training part {train}+ points, validation {data.val_size}, test {data.test_size} "
        f"(last {data.test_size} points); windows read {data.input_size}, forecasts {data.horizon} ahead"
    )
    report = {"season": season_length(freq), "freq": freq}
    baselines = ["naive"] + [baseline_name(s, season_length(freq)) for s in naive_seasons(freq)]
    lines.append(
        "  export gate: test MASE must beat the strongest of "
        + "; ".join(method_label(name, report) for name in baselines)
    )
    return lines
