"""Model checkpoints in PyTorch's format: a dict with `model_state_dict`, `model_config` and metadata.

A bioimage.io package that `unetflow export` wrote is read as the checkpoint it came from. A fine-tuning
run (`train.init_from`) starts from a checkpoint's net: `init_architecture` says which net that is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unetflow.atomic import atomic_path
from unetflow.config.model import ModelConfig
from unetflow.data.alignment import recorded_offset
from unetflow.errors import InputError
from unetflow.model.loss import recorded_threshold
from unetflow.model.package import is_package, read_package
from unetflow.model.unet import UNet, UNetConfig


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` with torch.save to a temporary name, then rename: never a half-written checkpoint.

    torch.save turns a failed write (a full disk) into a RuntimeError; written through a Python file, the
    OSError behind it is its context, raised as such so that `atomic_path` names the full disk.
    """
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        try:
            torch.save(state, handle)
        except RuntimeError as error:
            if isinstance(error.__context__, OSError):
                raise error.__context__ from error
            raise


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict; a missing or unreadable file is an InputError that names it.

    A bioimage.io package (.zip, rdf.yaml, bioimageio.yaml) that `unetflow export` wrote reads as the
    checkpoint it came from (`unetflow.model.package.read_package`).
    """
    target = Path(path)
    if is_package(target):
        return read_package(target, map_location=map_location)
    if not target.is_file():
        raise InputError(f"checkpoint {target} does not exist: run the train step first (unetflow train)")
    try:
        state = torch.load(target, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0][:200]
        raise InputError(
            f"checkpoint {target} cannot be read: it is not a complete PyTorch file (torch.load: {reason}). "
            "A download or copy cut short, or another kind of file: fetch or copy it again, or train again"
        ) from error
    if not isinstance(state, dict) or "model_state_dict" not in state or "model_config" not in state:
        raise InputError(f"{target} is not a unetflow checkpoint (no model_state_dict/model_config)")
    return state


def decision_threshold_of(path: str | Path) -> float:
    """The segmentation threshold the checkpoint's loss calls for (EVEN_ODDS where it records none)."""
    return recorded_threshold(load_checkpoint(path))


def init_architecture(state: dict[str, Any], section: ModelConfig, *, source: str) -> UNetConfig:
    """The net a run fine-tuning checkpoint `state` trains: the checkpoint's own.

    The config's `model:` section left at its defaults is overridden by it; a section that differs from
    the defaults and from the checkpoint contradicts it, an InputError naming each key and both values.
    """
    try:
        initial = UNetConfig(**state["model_config"])
    except TypeError as error:
        raise InputError(
            f"train.init_from {source}: not a unetflow U-Net ({error}); give a unetflow model"
        ) from None
    if section == ModelConfig():
        return initial
    recorded = {"dims": 2, "context_slices": 0, "kernels": None, "pools": None, **initial.to_dict()}
    differ = {
        key: value
        for key, value in section.dump().items()
        if recorded.get(key) != value and not (key in ("kernels", "pools") and value == "auto")
    }
    if differ:
        listed = ", ".join(
            f"model.{key} is {value} there, {recorded.get(key)} in the model" for key, value in differ.items()
        )
        raise InputError(
            f"train.init_from {source} is a net of another architecture than the config's ({listed}): "
            "fine-tuning trains the model's own net; drop the model section or set it to the model's values"
        )
    return initial


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> UNet:
    """The trained U-Net of a checkpoint, in eval mode on `device`; another architecture is an InputError."""
    state = load_checkpoint(path, map_location=device)
    try:
        model = UNet(UNetConfig(**state["model_config"]))
        model.load_state_dict(state["model_state_dict"])
    except (TypeError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0]
        raise InputError(
            f"{path} holds a net of another architecture than unetflow's U-Net ({reason}); "
            "give a checkpoint written by unetflow train"
        ) from error
    model.label_offset = recorded_offset(state)
    return model.to(device).eval()


def provenance(path: str | Path) -> dict[str, Any]:
    """What a prediction records of its model: file, checksum, architecture, training and its scores."""
    from unetflow.data.download import sha256_of

    state = load_checkpoint(path)
    train = state.get("train_config", {})
    return {
        "path": str(path),
        "sha256": sha256_of(path),
        "architecture": state["model_config"],
        "step": state.get("step"),
        "steps": train.get("steps"),
        "loss_weights": train.get("loss_weights"),
        "init_from": state.get("init_from"),
        "threshold": state.get("threshold"),
        "label_offset": list(recorded_offset(state)),
        "normalization": state.get("normalization"),
        "validation": state.get("metrics", {}),
    }
