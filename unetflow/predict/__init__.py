"""Overlap-tile prediction (the paper's Fig. 2) of volumes of any size, in place, resumable.

`tiles` runs the net over one block; `plan` fixes a prediction's layout (tiles, blocks, shards, groups);
`sources` reads the input where it lies (statistics, regions with data); `run` predicts shard by shard on
threads or a dask cluster; `progress` knows which shards are complete; `finalize` checks, builds the
multiscale pyramid and instance labels.

The names below are imported on first use, so that the workflow can read a plan (`unetflow.predict.plan`)
while parsing the Snakefile without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "build_pyramid": "finalize",
    "finalize_prediction": "finalize",
    "instance_labels": "finalize",
    "PredictionPlan": "plan",
    "groups_for": "plan",
    "make_plan": "plan",
    "planned_groups": "plan",
    "read_plan": "plan",
    "INSTANCES": "progress",
    "SEGMENTATION": "progress",
    "ShardWriter": "run",
    "check_complete": "progress",
    "incomplete_groups": "progress",
    "init_prediction": "run",
    "pending_shards": "progress",
    "predict_volume": "run",
    "prediction_threshold": "run",
    "Block": "tiles",
    "as_stack": "tiles",
    "BlockPredictor": "tiles",
    "check_depth": "plan",
    "choose_strides": "tiles",
    "dihedral": "tiles",
    "inference_model": "tiles",
    "predict_array": "tiles",
    "predict_whole_slice": "tiles",
    "read_context": "tiles",
    "read_window": "tiles",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'unetflow.predict' has no attribute {name!r}")
    return getattr(importlib.import_module(f"unetflow.predict.{_HOMES[name]}"), name)
