"""The ISBI 2012 challenge's submission file of a segmentation: a 32-bit float TIFF stack of the test volume
(30 slices of 512 x 512), 0 on membrane (here: the one-pixel boundaries between two objects, and voxels
without an object) and 1 on cell interior, the convention of the challenge's own labels and of the
probability maps its server thresholds (nnU-Net's export for the challenge writes the same).

The objects are the segment step's, slice by slice: a pixel is boundary where its object differs from the
object of its right or lower neighbour, so two touching objects are cut by a line one pixel wide and the
server's connected components of the interior are exactly the objects' pieces in that slice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tifffile

from unetflow.atomic import atomic_path
from unetflow.data import omezarr

log = logging.getLogger(__name__)

ISBI_SHAPE = (30, 512, 512)
"""The test volume of the challenge."""


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """1 inside objects, 0 where a pixel's object differs from its right or lower neighbour's (or is 0)."""
    labels = np.asarray(labels)
    out = (labels > 0).astype(np.float32)
    out[..., :-1, :][labels[..., :-1, :] != labels[..., 1:, :]] = 0.0
    out[..., :, :-1][labels[..., :, :-1] != labels[..., :, 1:]] = 0.0
    return out


def write_submission(segmentation: omezarr.Place, output: str | Path) -> tuple[int, int, int]:
    """Write the submission TIFF of a segment step's label image (slice by slice, at a path or on a store);
    its shape."""
    labels = omezarr.open_image(segmentation)
    shape = tuple(int(s) for s in labels.shape)
    if shape != ISBI_SHAPE:
        log.warning(
            "%s has shape %s, the ISBI 2012 test volume %s: the file is written, the server will refuse it",
            segmentation,
            shape,
            ISBI_SHAPE,
        )
    with atomic_path(output) as tmp, tifffile.TiffWriter(tmp) as tif:
        for z in range(shape[0]):
            tif.write(boundary_map(np.asarray(labels[z])), contiguous=True, photometric="minisblack")
    return shape  # type: ignore[return-value]
