"""Choose the compute device at run time: the same config works on a GPU node and on a laptop."""

from __future__ import annotations

import logging

import torch

from unetflow.errors import InputError

log = logging.getLogger(__name__)


def resolve_device(requested: str | None = "auto") -> torch.device:
    """'auto' (or None) takes CUDA when present and warns once otherwise; 'cuda' without a GPU is an error."""
    choice = (requested or "auto").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.warning("no CUDA GPU found: running on the CPU (set device: cpu to silence this warning)")
        return torch.device("cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"device {requested!r} was asked for but PyTorch sees no CUDA GPU (torch {torch.__version__}); "
            "run on a GPU node, install the CUDA build of torch (docs/getting-started.md: GPU install), "
            "or set device: auto"
        )
    try:
        return torch.device(choice)
    except RuntimeError as error:
        raise InputError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N") from error
