"""The training step: the U-Net trained (or fine-tuned) on the split's training sources, resumable."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from unetflow.atomic import protect_inputs
from unetflow.config.model import ModelConfig, TrainConfig
from unetflow.config.split import Split, split_entries, split_keys
from unetflow.logs import setup_logging
from unetflow.train.sources import resolve_sources, training_voxel_size

log = logging.getLogger(__name__)


def run_train(
    *,
    data: Mapping[str, str],
    weights: Mapping[str, str],
    output: str,
    step_log: str,
    val_log: str,
    workdir: str,
    model: ModelConfig,
    train: TrainConfig,
    split: Split,
    init_from: str | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """Train the U-Net on the split's training sources (resuming from `workdir` when interrupted).

    `data` and `weights` map each training volume to its import and weight maps. `init_from` is the model
    to fine-tune (its file: `train.init_from` downloaded or in place).
    """
    import torch

    from unetflow.model.checkpoint import init_architecture, load_checkpoint
    from unetflow.model.unet import UNetConfig
    from unetflow.train.loop import train as train_model

    setup_logging()
    entries = split_entries(split)
    torch.set_num_threads(max(1, threads))
    inputs = [*data.values(), *weights.values(), init_from]
    with protect_inputs(inputs, outputs=[output, step_log, val_log, workdir]):
        sources = resolve_sources(entries, data, weights, keys=split_keys(split))
        net = UNetConfig.from_section(model, voxel_size=training_voxel_size(sources, model))
        if init_from is not None:
            net = init_architecture(load_checkpoint(init_from), model, source=str(init_from))
        log.info(
            "training on %s", ", ".join(f"{s.name} ({len(s.train)} + {len(s.val)} slices)" for s in sources)
        )
        result = train_model(
            sources=sources,
            model_config=net,
            config=train,
            workdir=workdir,
            output=output,
            step_log=step_log,
            val_log=val_log,
            init=init_from,
        )
    log.info("training finished: %s", result)
    return result
