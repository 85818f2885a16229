"""The Lightning training job: data, task, evaluation and export."""
