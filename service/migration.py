"""Sessions that outlive their model: what a session keeps to be rebuilt under another, and when it can be.

A session keeps the last raw inputs it consumed (its *tail*) and a description of what its model reads. A
service running another model that reads the same inputs rebuilds the session's state by reading the tail from
a zero state, as a windowed forecast reads its window; the trained state forgets its start within about 100
steps, so a bounded tail stands for the whole history. A smoothed seasonal profile remembers longer (a rate of
0.02 is about 50 seasons): rebuilt from the tail, it is the windowed forecast's profile, settled over the
model's input_size rather than the whole history.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from models.features import FeatureSpec

# What must agree for one model's session to be continued by another, in the order a refusal names them.
# Calendar features are not among them: they come from timestamps, which a timed session's tail has.
_ASPECTS = ("target", "past_covariates", "future_covariates", "freq", "scaling")


# A model of log(1 + y) adds this mark to its description. The tail is raw values, which any model reads in its
# own way, so the mark does not keep a session from moving; statistics a session fitted on its own history are
# in the old model's space, though, so such a session moves only between models that agree on it.
_IN_LOGS = "log(1 + target)"


def what_it_reads(spec: FeatureSpec, per_series: bool) -> str:
    """What a model reads, as the compact JSON a session record carries; a model in units is described as
    before log targets, so that sessions opened earlier still move."""
    described = {**spec.to_dict(), "scaling": "per series" if per_series else "one for all series"}
    aspects = [described[aspect] for aspect in _ASPECTS] + ([_IN_LOGS] if spec.log_target else [])
    return json.dumps(aspects, separators=(",", ":"))


def in_logs(reads: str) -> bool:
    """Whether a description is of a model of log(1 + y)."""
    aspects = _aspects(reads)
    return aspects is not None and aspects[len(_ASPECTS) :] == (_IN_LOGS,)


# Longer than any description a model makes (a few hundred characters with a dozen covariates): a record that
# holds more was not written by seqcast, and is not parsed.
MAX_DESCRIPTION = 4_096


@lru_cache(maxsize=16)
def _aspects(reads: str) -> tuple[object, ...] | None:
    """The aspects of a record's description; None for text that is not one. A worker meets few distinct
    descriptions (one per model it has followed), so each is parsed once."""
    if len(reads) > MAX_DESCRIPTION:
        return None
    try:
        parsed = json.loads(reads)
    except (ValueError, RecursionError):
        return None
    readable = isinstance(parsed, list) and len(parsed) in (len(_ASPECTS), len(_ASPECTS) + 1)
    return tuple(parsed) if readable else None


def differences(stored: str, served: str) -> list[str]:
    """What a session's model reads that the serving model does not, aspect by aspect; empty if they agree."""
    if stored == served:
        return []
    theirs, ours = _aspects(stored), _aspects(served)
    if theirs is None or ours is None:
        return ["the session's description of its model's inputs is unreadable"]
    return [
        f"{aspect} {mine!r} there, {other!r} here"
        for aspect, mine, other in zip(_ASPECTS, theirs, ours, strict=False)  # the log mark: see _IN_LOGS
        if mine != other
    ]


def kept(tail: np.ndarray | None, target: np.ndarray, covariates: np.ndarray, length: int) -> np.ndarray | None:
    """The last ``length`` raw input rows (target, then covariates) once ``target`` and ``covariates`` follow
    ``tail``. None when no tail is kept: ``length`` 0, or a session that kept none (``tail`` None, a record of an
    earlier format), whose tail would miss its start and so rebuild it wrong."""
    if length == 0 or tail is None:
        return None
    rows = np.column_stack([target, covariates]).astype(np.float32)
    if len(rows) < length:
        rows = np.concatenate([tail[len(rows) - length :], rows])
    return rows[-length:]


def empty(columns: int) -> np.ndarray:
    """The tail of a session that has consumed nothing yet."""
    return np.zeros((0, columns), dtype=np.float32)
