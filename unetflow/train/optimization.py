"""How a training run optimizes its net: the optimizer (SGD with momentum, the paper's Caffe setting, or
Adam), the learning-rate schedule, mixed precision on CUDA (autocast and its gradient scaler) and the
memory layout of the net's tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unetflow.config.model import TrainConfig
from unetflow.model.unet import UNet

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}

__all__ = ["PRECISIONS", "Optimization", "build_optimization", "build_optimizer", "build_schedule"]


def build_optimizer(model: UNet, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's Caffe setting) or Adam."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning-rate factor per step: linear warm-up, then constant, cosine decay or step decay."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if config.schedule == "step":
            return 0.1 ** int(progress * 3)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Optimization:
    """What optimizes a run's net: the net in its memory layout, optimizer, schedule, gradient scaler,
    the autocast precision (None: float32) and the memory layout (None: the default)."""

    model: UNet
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    autocast: torch.dtype | None
    memory_format: torch.memory_format | None


def build_optimization(model: UNet, config: TrainConfig, *, device: torch.device, dims: int) -> Optimization:
    """The net channels-last on CUDA (`train.channels_last`), its optimizer and schedule, and mixed
    precision on CUDA (`train.precision`; float16 with a gradient scaler); on the CPU float32 (`dims`: the
    net's, 2 or 3)."""
    layout = torch.channels_last_3d if dims == 3 else torch.channels_last
    memory_format = layout if config.channels_last and device.type == "cuda" else None
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, config)
    schedule = build_schedule(optimizer, config)
    autocast = PRECISIONS[config.precision] if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)
    return Optimization(model, optimizer, schedule, scaler, autocast, memory_format)
