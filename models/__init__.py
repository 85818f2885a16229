"""Plain-PyTorch recurrent forecasters and their checkpoint format."""

from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from models.features import FeatureSpec, Scaling, encode_inputs
from models.forecaster import Forecaster, ForecasterConfig, State

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "FeatureSpec",
    "Forecaster",
    "ForecasterConfig",
    "Scaling",
    "State",
    "encode_inputs",
    "load_checkpoint",
    "save_checkpoint",
]
