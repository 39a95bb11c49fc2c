"""bioimage.io model packages read back as checkpoints: what `pretrained:` and `train.init_from` take.

A package that `unetflow export` wrote (unetflow.export.bioimageio) carries the net's architecture, its
weights as a PyTorch state dict and unetflow's own record (threshold, normalisation, tile); `read_package`
turns it back into a checkpoint dict. bioimageio.spec (the `bioimageio` extra) is imported only when used.
"""

from __future__ import annotations

import io
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from unetflow.errors import InputError
from unetflow.model.loss import EVEN_ODDS
from unetflow.model.unet import UNetConfig

PACKAGE_NAMES = ("rdf.yaml", "bioimageio.yaml")
"""File names of a package's description (besides `<name>.bioimageio.yaml`); a package is also its .zip."""
INSTALL_HINT = "install unetflow's bioimageio extra: pip install -e '.[bioimageio]'"


def is_package(path: str | Path) -> bool:
    """Whether `path` names a bioimage.io package (a .zip, or its rdf.yaml / bioimageio.yaml)."""
    name = Path(path).name.lower()
    return name.endswith((".zip", ".bioimageio.yaml")) or name in PACKAGE_NAMES


def bioimageio_spec() -> Any:
    """bioimageio.spec, or an InputError that says how to install it."""
    try:
        import bioimageio.spec
    except ImportError as error:
        raise InputError(
            f"bioimage.io packages need bioimageio.spec and bioimageio.core: {INSTALL_HINT}"
        ) from error
    return bioimageio.spec


def read_package(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint dict (model_state_dict, model_config, threshold, ...) of a package `export_model` wrote.

    `path` is the package's .zip or its rdf.yaml / bioimageio.yaml. A package without PyTorch state-dict
    weights, whose tensors are not one 2-D (batch, channel, y, x) or 3-D image, or whose architecture is not
    unetflow's UNet is an InputError that names the file and what to do instead. A 3-D net's package has a z
    axis; a 2-D net with context slices has them as input channels (its kwargs say which).
    """
    spec = bioimageio_spec()
    target = Path(path)
    if not target.exists():
        raise InputError(f"bioimage.io package {target} does not exist: check the path, or export it first")
    descr = spec.load_description(target, format_version="latest")
    if isinstance(descr, spec.InvalidDescr):
        raise InputError(
            f"{target} is not a valid bioimage.io package ({descr.get_reason()}); check it with "
            "`bioimageio validate-format`"
        )
    if descr.type != "model":
        raise InputError(f"{target} describes a bioimage.io {descr.type}, not a model: give a model package")
    fix = "predict with it in bioimageio.core, or export unetflow's own checkpoint with `unetflow export`"
    weights = descr.weights.pytorch_state_dict
    if weights is None:
        formats = [key for key, value in descr.weights if value is not None]
        raise InputError(
            f"{target} has {', '.join(formats)} weights but no PyTorch state dict (pytorch_state_dict), the "
            f"only weights unetflow loads; {fix}"
        )
    kinds = [[axis.type for axis in tensor.axes] for tensor in (*descr.inputs, *descr.outputs)]
    if kinds not in (
        [["batch", "channel", "space", "space"]] * 2,
        [["batch", "channel", "space", "space", "space"]] * 2,
    ):
        raise InputError(
            f"{target} is not a 2-D image model or a 3-D one: unetflow needs one input and one output with "
            f"axes (batch, channel, y, x) or (batch, channel, z, y, x), this package has {kinds}; {fix}"
        )
    architecture = weights.architecture
    known = {item.name for item in fields(UNetConfig)}
    if str(architecture.callable) != "UNet" or not set(architecture.kwargs) <= known:
        raise InputError(
            f"{target}: its architecture {architecture.callable}({', '.join(architecture.kwargs)}) is not "
            f"unetflow's UNet({', '.join(sorted(known))}); {fix}"
        )
    state_dict = torch.load(
        io.BytesIO(weights.get_reader().read()), map_location=map_location, weights_only=True
    )
    record = dict((descr.config.model_extra or {}).get("unetflow") or {})
    return {
        **record,
        "model_state_dict": state_dict,
        "model_config": dict(architecture.kwargs),
        "threshold": float(record.get("threshold", EVEN_ODDS)),
        "source": str(target),
    }
