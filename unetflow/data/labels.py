"""Label images with unannotated pixels: how the ignore label is stored, and reading it back.

A lab's annotations are sparse: some cells traced in a crop, the rest left unlabelled. The labels source
marks those pixels with a value of its own (`volumes.<name>.labels.ignore`); the import stores them as the
largest value of the stored type, 255 in binary labels (uint8 0/1) and 2**32 - 1 in instance labels
(uint32 ids), and records that value in the image's attributes (`unetflow.data.omezarr.label_ignore`). Every
reader of labels splits a block into the truth (unannotated pixels set to 0) and the mask of unannotated
pixels with `split_ignore`, so that nothing mistakes them for cells.

NumPy only: the metrics and the workflow's checks use it without torch or zarr.
"""

from __future__ import annotations

import numpy as np

IGNORE_STORED: dict[str, int] = {"binary": 255, "instance": 2**32 - 1}
"""The value unannotated pixels are stored with, per kind of label image (the stored type's largest)."""


def split_ignore(block: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels with unannotated pixels set to 0, mask of unannotated pixels); the mask is None without any.

    `ignore` is the stored ignore value (None: every pixel is annotated, the labels come back unchanged).
    """
    labels = np.asarray(block)
    if ignore is None:
        return labels, None
    unannotated = labels == ignore
    if not unannotated.any():
        return labels, None
    return np.where(unannotated, 0, labels).astype(labels.dtype, copy=False), unannotated


def foreground(block: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(cell interior as uint8 0/1, mask of unannotated pixels or None): the two classes the net learns."""
    labels, unannotated = split_ignore(block, ignore)
    return (labels > 0).astype(np.uint8), unannotated
