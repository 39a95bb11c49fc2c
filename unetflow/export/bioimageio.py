"""bioimage.io model packages (spec 0.5) of unetflow checkpoints, written and tested.

`export_model` writes a checkpoint as a package that runs without unetflow wherever the model spec 0.5 is
read (bioimageio.core, and through it napari; the zoo's other consumers): TorchScript weights, the state
dict with the UNet's source file and its keyword arguments, the valid input sizes (min + n * 2**depth) and
an output that shrinks by the net's fixed valid-convolution margin, the normalisation as preprocessing,
softmax as postprocessing, a test input with its expected output, a cover, the paper as citation, the
training data and the measured metrics.
unetflow.model.package reads such a package back as a checkpoint.

bioimageio.spec and bioimageio.core (the `bioimageio` extra) are imported only when used.
"""

from __future__ import annotations

import getpass
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from unetflow.atomic import atomic_path
from unetflow.config.model import VolumeConfig
from unetflow.data.alignment import moves, recorded_offset
from unetflow.errors import InputError
from unetflow.geometry import NetGeometry, UNetGeometry
from unetflow.model import unet as model_module
from unetflow.model.loss import EVEN_ODDS
from unetflow.model.package import INSTALL_HINT, bioimageio_spec
from unetflow.model.unet import UNet, UNetConfig

log = logging.getLogger(__name__)

INPUT_ID = "raw"
OUTPUT_ID = "probability"
CLASS_NAMES = ("background", "foreground")
FOREGROUND_CHANNEL = 1
"""Output channel of the foreground (cell interior) probability, as in unetflow's own prediction."""
NORMALIZATION_POLICY = "zscore-volume"
"""unetflow's normalisation: each volume z-scored with its own mean and standard deviation."""
DEFAULT_LICENSE = "MIT"
"""unetflow's own licence, which the architecture source in every package carries."""
PAPER_TEXT = (
    "Ronneberger O., Fischer P., Brox T. (2015) U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation. MICCAI 2015, LNCS 9351, pp. 234-241"
)
PAPER_DOI = "10.1007/978-3-319-24574-4_28"
ARCHITECTURE_FILE = "unetflow_model.py"
DEFAULT_TEST_OUTPUT = 128
"""Output size of the test input when the checkpoint records no training tile."""


def context_tile(
    image: np.ndarray, geometry: UNetGeometry, output: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """A net input for `output` x `output` px of a 2-D image, read as overlap-tile prediction reads a block.

    The block's offset (y, x) is a multiple of 2**depth near the image's centre and the input is its context
    of `geometry.margin` px on every side, mirrored past the image's border, so the net's output for this
    input is unetflow's prediction of image[y : y + output, x : x + output].
    """
    from unetflow.predict import read_context

    if image.ndim != 2:
        raise InputError(f"the test image must be a 2-D (y, x) slice, got shape {image.shape}")
    margin, align = geometry.margin, geometry.alignment
    y, x = (max(0, (size - output) // 2) // align * align for size in image.shape)
    tile = read_context(image[None], 0, (y - margin, y + output + margin), (x - margin, x + output + margin))
    return tile.astype(np.float32), (y, x)


def net_input(model: UNet, tile: np.ndarray) -> np.ndarray:
    """A tile as the net's input tensor: (1, 1, y, x), a 3-D net's (1, 1, z, y, x), or a 2-D net with context
    slices' (1, 2k + 1, y, x)."""
    return tile[None] if model.config.dims == 2 and tile.ndim == 3 else tile[None, None]


def class_probabilities(model: UNet, tile: np.ndarray) -> np.ndarray:
    """Softmax of the net over an input z-scored with its own statistics: (1, classes, y', x') (3-D: (1,
    classes, z', y', x')); `tile` is (y, x), a 3-D net's (z, y, x) or a context net's (2k + 1, y, x)."""
    from unetflow.data import omezarr

    normalized = omezarr.normalize(tile, float(tile.mean()), float(tile.std()))
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(net_input(model, normalized)))
    return torch.softmax(logits, dim=1).numpy()


def volume_tile(
    volume: Any, net: NetGeometry, output: int, index: int
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A net input for an output block of a volume, read as overlap-tile prediction reads it: `output` x
    `output` px of slice `index` near the centre of its plane, read with its context slices (a 2-D net's
    2k + 1 as channels), or a 3-D net's smallest block along z from `index` on (aligned), with its margins,
    mirrored past the volume's border. Returns the tile and the block's first voxel (z, y, x)."""
    from unetflow.predict import read_window

    plane = net.plane
    margin, align = plane.margin, plane.alignment
    y, x = (max(0, (size - output) // 2) // align * align for size in volume.shape[1:])
    if net.dims == 3:
        along = net.axis(0)
        depth = along.valid_output(1)
        z = min(index, max(0, volume.shape[0] - depth)) // along.alignment * along.alignment
        slices = (z - along.margin, z + depth + along.margin)
    else:
        z, slices = index, (index - net.context, index + net.context + 1)
    rows, cols = (y - margin, y + output + margin), (x - margin, x + output + margin)
    return read_window(volume, slices, rows, cols).astype(np.float32), (z, y, x)


def read_test_volume(image: str | Path | np.ndarray) -> tuple[Any, str, tuple[tuple[float, ...], str] | None]:
    """A volume (OME-Zarr, any format unetflow imports, or an array) as (z, y, x), its name and its voxel
    size and unit (from the attributes unetflow's import writes; None where unknown)."""
    from unetflow.data import omezarr
    from unetflow.data.formats import infer_format, open_volume
    from unetflow.predict import as_stack

    if isinstance(image, np.ndarray):
        return as_stack(image), "the test image array", None
    if infer_format(image) == "zarr":
        attrs = omezarr.read_attrs(image)
        voxel = None
        if "voxel_size" in attrs:
            voxel = (tuple(float(v) for v in attrs["voxel_size"]), str(attrs.get("unit", "nanometer")))
        return as_stack(omezarr.open_image(image)), str(image), voxel
    return as_stack(open_volume(image)), str(image), None


def check_slice(volume: Any, name: str, index: int) -> None:
    """A test slice outside the volume is an InputError naming it and the range."""
    if not 0 <= index < volume.shape[0]:
        raise InputError(
            f"test image slice {index} is out of range: {name} has {volume.shape[0]} slices; "
            f"give a slice between 0 and {volume.shape[0] - 1}"
        )


def read_metrics(path: str | Path) -> dict[str, Any]:
    """The overall metrics of `unetflow evaluate`'s JSON (and how many slices they average)."""
    target = Path(path)
    try:
        payload = json.loads(target.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"metrics {target} cannot be read ({error}); run the evaluate step first") from error
    if not isinstance(payload, dict) or not isinstance(payload.get("overall"), dict):
        raise InputError(
            f"{target} holds no 'overall' metrics: give the JSON that `unetflow evaluate` writes"
        )
    return {
        "overall": {key: float(value) for key, value in payload["overall"].items()},
        "slices_evaluated": int(payload.get("slices_evaluated", 0)),
        "threshold": float(payload.get("threshold", EVEN_ODDS)),
    }


def _cover(path: Path, raw: np.ndarray, probability: np.ndarray) -> None:
    """A 2:1 PNG: the raw region of the test output | its foreground probability."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3), dpi=100)
    left, right = figure.subplots(1, 2)
    left.imshow(raw, cmap="gray")
    right.imshow(probability, cmap="magma", vmin=0.0, vmax=1.0)
    for axes, title in ((left, "raw"), (right, "foreground probability")):
        axes.set_title(title, fontsize=10)
        axes.set_axis_off()
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.04)
    figure.savefig(path)


def _normalization_text(normalization: dict[str, Any] | None) -> str:
    """What the package's preprocessing does, and the training volume's statistics where recorded."""
    text = "Each input image is z-scored with its own mean and standard deviation"
    if normalization and "mean" in normalization and "std" in normalization:
        text += f" (the training volume's: mean {normalization['mean']:.4g}, std {normalization['std']:.4g})"
    return text + "."


def _check_normalization(state: dict[str, Any], checkpoint: Path) -> dict[str, Any] | None:
    """The checkpoint's normalisation record; a policy a package cannot state is an InputError."""
    normalization = state.get("normalization")
    if normalization is None:
        return None
    policy = normalization.get("policy", NORMALIZATION_POLICY)
    if policy != NORMALIZATION_POLICY:
        raise InputError(
            f"{checkpoint}: normalization policy {policy!r} has no bioimage.io preprocessing here (only "
            f"{NORMALIZATION_POLICY!r}, z-score per image); train with that policy to export"
        )
    return dict(normalization)


def _readme(
    *,
    name: str,
    description: str,
    geometry: UNetGeometry,
    threshold: float,
    metrics: dict[str, Any] | None,
    label_offset: tuple[float, float] = (0.0, 0.0),
    net: NetGeometry | None = None,
) -> str:
    """The package's documentation, with the '## Validation' section the spec asks for."""
    margin, sizes = geometry.margin, (geometry.valid_input(1), geometry.alignment)
    along_z = _along_z(net) if net is not None else []
    lines = [
        f"# {name}",
        "",
        description,
        "",
        "## Input and output",
        "",
        f"- input `{INPUT_ID}`: (batch, channel = 1, y, x) float32; y and x are {sizes[0]} + n * {sizes[1]} "
        "pixels (the sizes every 2x2 max-pooling of the valid-convolution U-Net sees as even).",
        f"- output `{OUTPUT_ID}`: (batch, channel, y - {2 * margin}, x - {2 * margin}): the net uses "
        "valid convolutions, so output pixel (i, j) is the prediction of input pixel "
        f"(i + {margin}, j + {margin}). Channel {FOREGROUND_CHANNEL} ({CLASS_NAMES[FOREGROUND_CHANNEL]}) is "
        "the probability of the foreground class (the cell interior of EM membrane segmentation), channel 0 "
        f"that of the background. unetflow segments the foreground at probability {threshold:.4g} (the "
        "point that undoes the class weights of the training loss).",
        f"- To predict a whole image, pad it by {margin} pixels on each side (mirroring) and tile it with "
        f"tiles whose offsets are multiples of {sizes[1]}: that reproduces one pass over the whole image.",
        *along_z,
        *(
            [
                "- unetflow moves the input image by (dy, dx) = "
                f"({label_offset[0]:+.2f}, {label_offset[1]:+.2f}) px (linear interpolation) before the net: "
                "the offset of its training labels from the raw image's boundaries (train.label_offset: "
                "auto). Do the same to meet labels drawn like those."
            ]
            if moves(label_offset)
            else []
        ),
        "",
        "## Validation",
        "",
    ]
    if metrics is None:
        lines.append("No metrics were given at export.")
    else:
        lines += [
            f"Measured by unetflow on {metrics['slices_evaluated']} held-out slice(s), foreground "
            f"thresholded at {metrics['threshold']:.4g}:",
            "",
            "| metric | value |",
            "| --- | --- |",
            *(f"| {key} | {value:.4g} |" for key, value in metrics["overall"].items()),
        ]
    lines += ["", "## Citation", "", f"{PAPER_TEXT}. doi:{PAPER_DOI}", ""]
    return "\n".join(lines)


def _along_z(net: NetGeometry) -> list[str]:
    """The README's lines on the third dimension: a 3-D net's z axis, or a 2-D net's context slices."""
    if net.dims == 3:
        along = net.axis(0)
        return [
            f"- A 3-D net: input and output have a z axis after the channel (batch, channel, z, y, x); z is "
            f"{along.valid_input(1)} + n * {along.alignment} slices in and {2 * along.margin} fewer out, and "
            f"tiles along z have offsets that are multiples of {along.alignment}. Kernels (z, y, x) per "
            f"level: {[list(k) for k in net.kernels] if net.kernels else '3 x 3 x 3 throughout'}."
        ]
    if net.context:
        return [
            f"- The {2 * net.context + 1} input channels are the slices z - {net.context} .. z + "
            f"{net.context} around the predicted slice z, in that order, mirrored at the volume's ends."
        ]
    return []


def export_model(
    checkpoint: str | Path,
    output: str | Path,
    *,
    image: str | Path | np.ndarray | None = None,
    image_slice: int = 0,
    test_size: int | None = None,
    metrics: str | Path | None = None,
    name: str | None = None,
    description: str | None = None,
    license: str = DEFAULT_LICENSE,
    authors: Sequence[str] | None = None,
    training_data: str | None = None,
    training_data_license: str | None = None,
    test: bool = True,
) -> Path:
    """Write the checkpoint as a bioimage.io model package (.zip), validated by bioimageio.spec.

    The test input is the context of a `test_size` px output block (default: the training tile) of slice
    `image_slice` of `image` (an OME-Zarr or any volume unetflow imports; default: a synthetic EM-like slice),
    and its expected output the net's softmax. `authors` default to the login name running the export;
    `test` runs bioimageio.core's `test_model` on the package before it is renamed into place.
    """
    spec = bioimageio_spec()
    from bioimageio.spec.model import v0_5

    licences = _licences(v0_5, license=license, data_license=training_data_license)
    source = Path(checkpoint)
    state, model, geometry = _load_model(source)
    normalization = _check_normalization(state, source)
    scores = read_metrics(metrics) if metrics is not None else None
    tile, voxel = _test_input(model, state, image, image_slice, test_size)
    expected = class_probabilities(model, tile)
    texts = _texts(
        model.config,
        state,
        normalization,
        scores,
        geometry=geometry,
        name=name,
        description=description,
        training_data=training_data,
    )
    with tempfile.TemporaryDirectory(prefix="unetflow-export-") as folder, warnings.catch_warnings():
        # bioimageio.spec leaves the files it hashes open until they are collected: noise in the log
        warnings.simplefilter("ignore", ResourceWarning)
        files = Path(folder)
        _write_files(files, model, tile, expected, texts["readme"])
        descr = _model_descr(
            v0_5,
            files,
            model=model,
            state=state,
            source=source,
            texts=texts,
            licences=licences,
            authors=authors,
            voxel=voxel,
            normalization=normalization,
            scores=scores,
        )
        package = spec.save_bioimageio_package(descr, output_path=files / "package.zip")
        if test:
            check_package(package)
        with atomic_path(output) as tmp:
            shutil.move(package, tmp)
    log.info("wrote bioimage.io package %s (from %s)", output, source)
    return Path(output)


def _licences(v0_5: Any, *, license: str, data_license: str | None) -> dict[str, Any]:
    """The package's and the training data's SPDX licence ids (the latter None where not given)."""
    return {
        "package": _licence_id(v0_5, license, what="the package's licence"),
        "data": None
        if data_license is None
        else _licence_id(v0_5, data_license, what="the training data's licence"),
    }


def _load_model(source: Path) -> tuple[dict[str, Any], UNet, UNetGeometry]:
    """The checkpoint's state, its net with the trained weights (eval mode) and the net's in-plane geometry,
    whose checks (a layout the tiling cannot use) come before the net is built."""
    from unetflow.model.checkpoint import load_checkpoint

    state = load_checkpoint(source)
    config = UNetConfig(**state["model_config"])
    geometry = config.geometry
    model = UNet(config)
    model.load_state_dict(state["model_state_dict"])
    model.eval()
    return state, model, geometry


def _texts(
    config: UNetConfig,
    state: dict[str, Any],
    normalization: dict[str, Any] | None,
    scores: dict[str, Any] | None,
    *,
    geometry: UNetGeometry,
    name: str | None,
    description: str | None,
    training_data: str | None,
) -> dict[str, str]:
    """The package's name, description, README and training data text: the given ones, else what the
    checkpoint's net and normalisation are."""
    kind = {3: " 3-D"}.get(
        config.dims, f" {2 * config.context_slices + 1}-slice" if config.context_slices else ""
    )
    name = name or f"unetflow{kind} U-Net depth {config.depth} width {config.base_channels}"
    description = description or (
        f"The valid-convolution U-Net of Ronneberger et al. (2015), depth {config.depth}, "
        f"{config.base_channels} base channels, trained with unetflow for two-class segmentation of EM "
        f"images. Output channel {FOREGROUND_CHANNEL} is the foreground (cell interior) probability; the "
        f"output is {geometry.margin} px smaller than the input on each side"
        + (f" ({config.net_geometry.z.margin} slices along z). " if config.dims == 3 else ". ")
        + _normalization_text(normalization)
    )
    readme = _readme(
        name=name,
        description=description,
        geometry=geometry,
        threshold=float(state.get("threshold", EVEN_ODDS)),
        metrics=scores,
        label_offset=recorded_offset(state),
        net=config.net_geometry,
    )
    data = training_data or (
        "The volume this checkpoint was trained on; not described further at export (give a description). "
        + _normalization_text(normalization)
    )
    return {"name": name, "description": description, "readme": readme, "training_data": data}


def _model_descr(
    v0_5: Any,
    files: Path,
    *,
    model: UNet,
    state: dict[str, Any],
    source: Path,
    texts: dict[str, str],
    licences: dict[str, Any],
    authors: Sequence[str] | None,
    voxel: tuple[tuple[float, ...], str] | None,
    normalization: dict[str, Any] | None,
    scores: dict[str, Any] | None,
) -> Any:
    """The package's description of the files in `files`; one bioimageio.spec refuses is an InputError."""
    config = model.config
    torch_version = v0_5.Version(torch.__version__.split("+")[0])
    try:
        return v0_5.ModelDescr(
            name=texts["name"],
            description=texts["description"],
            authors=[v0_5.Author(name=author) for author in (authors or [getpass.getuser()])],
            cite=[v0_5.CiteEntry(text=PAPER_TEXT, doi=v0_5.Doi(PAPER_DOI))],
            license=licences["package"],
            covers=[v0_5.FileDescr(source=files / "cover.png")],
            documentation=v0_5.FileDescr(source=files / "README.md"),
            tags=["unet", "segmentation", "electron-microscopy", f"{config.dims}d", "pytorch", "unetflow"],
            inputs=[_input_descr(v0_5, files, config.net_geometry, voxel)],
            outputs=[_output_descr(v0_5, files, config.net_geometry, voxel, classes=config.num_classes)],
            weights=_weights_descr(v0_5, files, config, torch_version),
            training_data=v0_5.DatasetDescr(
                name="unetflow training volume",
                description=texts["training_data"],
                tags=["electron-microscopy", "segmentation"],
                license=licences["data"],
            ),
            config=_package_config(v0_5, model, state=state, normalization=normalization, scores=scores),
        )
    except ValueError as error:
        raise InputError(
            f"{source} cannot be described for bioimage.io ({error}); check the name (letters, digits, "
            "spaces and _+-(), 5 to 128 characters), the authors (no slashes) and the description"
        ) from error


def _weights_descr(v0_5: Any, files: Path, config: UNetConfig, torch_version: Any) -> Any:
    """Both weights formats: the state dict with the UNet's source and keyword arguments, and TorchScript."""
    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=files / "weights.pt",
            architecture=v0_5.ArchitectureFromFileDescr(
                source=files / ARCHITECTURE_FILE,
                callable=v0_5.Identifier("UNet"),
                kwargs=config.to_dict(),
            ),
            pytorch_version=torch_version,
        ),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=files / "weights_torchscript.pt",
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
    )


def _package_config(
    v0_5: Any,
    model: UNet,
    *,
    state: dict[str, Any],
    normalization: dict[str, Any] | None,
    scores: dict[str, Any] | None,
) -> Any:
    """The package's config: bioimage.io's architecture summary and unetflow's own provenance."""
    config, geometry = model.config, model.config.geometry
    return v0_5.Config(
        bioimageio=v0_5.BioimageioConfig(
            architecture_type="U-Net",
            architecture_description=(
                f"Valid-convolution U-Net, depth {config.depth}, {config.base_channels} base "
                f"channels, margin {geometry.margin} px, input sizes {geometry.valid_input(1)} + "
                f"n * {geometry.alignment}"
            ),
            task="semantic segmentation",
            model_parameter_count=sum(p.numel() for p in model.parameters()),
        ),
        unetflow=_provenance(state, normalization, scores),
    )


def _test_input(
    model: UNet, state: dict[str, Any], image: str | Path | np.ndarray | None, index: int, size: int | None
) -> tuple[np.ndarray, tuple[tuple[float, ...], str] | None]:
    """The package's test input: the overlap-tile context of an output block (the training tile's size
    unless `size`) of slice `index` of `image` (default: the embedded generator's data, 3-D for a net that
    sees along z), and the image's voxel size and unit where known."""
    net = model.config.net_geometry
    plane = net.plane
    out_size = plane.valid_output(int(size or (state.get("tile") or {}).get("output") or DEFAULT_TEST_OUTPUT))
    flat = net.dims == 2 and net.context == 0
    voxel = None
    if image is None:
        index, side = 0, plane.input_for_output(out_size)
        if flat:
            from unetflow.data.synthesize import synthesize_volume

            volume = synthesize_volume(shape=(1, side, side), seed=0)[0]
        else:
            from unetflow.data.synthesize3d import synthesize_volume_3d

            volume = synthesize_volume_3d(
                shape=(max(net.min_slices, 2 * net.context + 1), side, side), seed=0
            )[0]
    else:
        volume, name, voxel = read_test_volume(image)
        check_slice(volume, name, index)
    if flat:
        return context_tile(np.asarray(volume[index]), plane, out_size)[0], voxel
    return volume_tile(volume, net, out_size, index)[0], voxel


def _write_files(files: Path, model: UNet, tile: np.ndarray, expected: np.ndarray, readme: str) -> None:
    """The package's files: both weights, the architecture source, test and sample tensors, cover, README."""
    torch.save(model.state_dict(), files / "weights.pt")
    with warnings.catch_warnings():
        # TorchScript is what bioimage.io consumers run (torch.export has no weights format there)
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=DeprecationWarning)
        traced = torch.jit.trace(model, torch.from_numpy(net_input(model, tile)))
        torch.jit.save(traced, str(files / "weights_torchscript.pt"))
    (files / ARCHITECTURE_FILE).write_text(Path(model_module.__file__).read_text())
    np.save(files / "test_input.npy", net_input(model, tile))
    np.save(files / "test_output.npy", expected)
    tifffile.imwrite(files / "sample_input.tif", tile)
    tifffile.imwrite(files / "sample_output.tif", expected[0])
    net = model.config.net_geometry
    margin = net.plane.margin
    plane = (
        tile if tile.ndim == 2 else tile[net.z.margin]
    )  # the first output slice's (3-D; context: the centre)
    probability = expected[0, FOREGROUND_CHANNEL]
    _cover(
        files / "cover.png",
        plane[margin:-margin, margin:-margin],
        probability if probability.ndim == 2 else probability[0],
    )
    (files / "README.md").write_text(readme)


def _space_axes(
    v0_5: Any, net: NetGeometry, voxel: tuple[tuple[float, ...], str] | None, *, output: bool
) -> list[Any]:
    """The space axes (z of a 3-D net, y, x): inputs of min + n * alignment px, outputs the input's minus
    twice the valid-convolution margin along each axis; scaled by the voxel size where known."""
    axes = list(zip("zyx", (net.axis(0), net.plane, net.plane), strict=True))
    axes = axes if net.dims == 3 else axes[1:]
    found = []
    for name, geometry in axes:
        scale = {"unit": voxel[1], "scale": voxel[0]["zyx".index(name)]} if voxel else {}
        if output:
            size = v0_5.SizeReference(
                tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(name), offset=-2 * geometry.margin
            )
            found.append(v0_5.SpaceOutputAxis(id=v0_5.AxisId(name), size=size, **scale))
        else:
            size = v0_5.ParameterizedSize(min=geometry.valid_input(1), step=geometry.alignment)
            found.append(v0_5.SpaceInputAxis(id=v0_5.AxisId(name), size=size, **scale))
    return found


def _input_descr(
    v0_5: Any, files: Path, net: NetGeometry, voxel: tuple[tuple[float, ...], str] | None
) -> Any:
    """The input: (batch, channel, [z,] y, x) of valid sizes, z-scored per image; a 2-D net's context slices
    are its channels, named by their offset along z."""
    context = net.context
    sign = {-1: "m", 0: "", 1: "p"}  # raw_zm1, raw_z0, raw_zp1: identifiers, as the spec wants
    offsets = range(-context, context + 1)
    names = [f"{INPUT_ID}_z{sign[(o > 0) - (o < 0)]}{abs(o)}" for o in offsets] if context else [INPUT_ID]
    space = ["z", "y", "x"] if net.dims == 3 else ["y", "x"]
    return v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description="a grey-value image"
        + ("; channels: the slices around the predicted one" if context else ""),
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[v0_5.Identifier(name) for name in names]),
            *_space_axes(v0_5, net, voxel, output=False),
        ],
        test_tensor=v0_5.FileDescr(source=files / "test_input.npy"),
        sample_tensor=v0_5.FileDescr(source=files / "sample_input.tif"),
        preprocessing=[
            v0_5.ZeroMeanUnitVarianceDescr(
                kwargs=v0_5.ZeroMeanUnitVarianceKwargs(
                    axes=[v0_5.AxisId(axis) for axis in ("channel", *space)]
                )
            )
        ],
    )


def _output_descr(
    v0_5: Any, files: Path, net: NetGeometry, voxel: tuple[tuple[float, ...], str] | None, *, classes: int
) -> Any:
    """The output: softmax over the classes, each space axis the input's minus twice its margin."""
    names = list(CLASS_NAMES) if classes == 2 else [f"class{i}" for i in range(classes)]
    return v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description=f"class probabilities; channel {FOREGROUND_CHANNEL} = foreground",
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[v0_5.Identifier(name) for name in names]),
            *_space_axes(v0_5, net, voxel, output=True),
        ],
        test_tensor=v0_5.FileDescr(source=files / "test_output.npy"),
        sample_tensor=v0_5.FileDescr(source=files / "sample_output.tif"),
        postprocessing=[v0_5.SoftmaxDescr(kwargs=v0_5.SoftmaxKwargs(axis=v0_5.AxisId("channel")))],
    )


def _provenance(
    state: dict[str, Any], normalization: dict[str, Any] | None, scores: dict[str, Any] | None
) -> dict[str, Any]:
    """What unetflow needs to take the package back as a checkpoint, and where it came from."""
    record: dict[str, Any] = {
        "model_config": dict(state["model_config"]),
        "threshold": float(state.get("threshold", EVEN_ODDS)),
        "normalization": normalization or {"policy": NORMALIZATION_POLICY},
        "foreground_channel": FOREGROUND_CHANNEL,
    }
    for key in ("tile", "step", "train_config", "label_offset"):
        if key in state:
            record[key] = state[key]
    if scores is not None:
        record["metrics"] = scores
    return record


def check_package(path: str | Path, *, weight_format: str | None = None) -> Any:
    """Run bioimageio.core's test_model on a package (every weights format unless one is named).

    Returns the validation summary; a package that fails is a RuntimeError that prints it.
    """
    try:
        import bioimageio.core
    except ImportError as error:
        raise InputError(f"testing a bioimage.io package needs bioimageio.core: {INSTALL_HINT}") from error
    summary = bioimageio.core.test_model(Path(path), weight_format=weight_format, devices=["cpu"])
    if summary.status != "passed":
        raise RuntimeError(
            f"bioimage.io package {path} failed bioimageio.core's test_model:\n{summary.format()}"
        )
    return summary


def describe_training_data(volume: str, entry: VolumeConfig, train_slices: str | Sequence[int]) -> str:
    """A line on a workflow run's training data: the split volume, its source and the training slices."""
    if entry.synthetic is not None:
        options = entry.synthetic
        source = f"unetflow's synthetic EM-like generator (shape {options.shape}, seed {options.seed})"
    else:
        raw = entry.raw
        source = "?" if raw is None else str(raw.url or Path(str(raw.path)).name)
    voxel = entry.voxel_size
    pixel = f", voxel size {voxel} {entry.unit}" if voxel else ""
    return f"Slices {train_slices} of volume '{volume}': {source}{pixel}."


def _licence_id(v0_5: Any, value: str, *, what: str) -> Any:
    """An SPDX licence id of bioimage.io's list; anything else is an InputError that says where to look."""
    try:
        return v0_5.LicenseId(value)
    except ValueError as error:
        raise InputError(
            f"{what} {value!r} is not an SPDX licence identifier; give one such as MIT, CC-BY-4.0 or CC0-1.0 "
            "(https://spdx.org/licenses/)"
        ) from error
