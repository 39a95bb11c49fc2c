"""Memory a long step gives back: freed block arrays returned to the system, not kept by the allocator.

glibc's malloc gives an allocation above its mmap threshold (128 KiB at start) a mapping of its own, unmapped
when freed; but the first time it frees one, it raises the threshold to that size (up to 32 MiB), so from
then on block-sized arrays come from the heap, which keeps what is freed and fragments. A step that
allocates and frees a block's arrays in turn then holds far more than its largest block needs: the segment
step of 256 x 128 x 128 voxels peaked at 250 MiB with the adaptive threshold and 167 MiB with a fixed one
(benchmarks/segment.py --only memory). Fixing the threshold keeps every large array in its own mapping.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter number of the mmap threshold (malloc.h)."""
MAPPED_FROM = 256 * 1024
"""Bytes from which an allocation gets a mapping of its own (a few chunk-sized pieces stay on the heap)."""


def return_freed_arrays() -> bool:
    """Fix glibc's mmap threshold at MAPPED_FROM bytes for this process (so that the adaptive threshold
    cannot keep freed arrays); whether it was set (False: not Linux with glibc, nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MAPPED_FROM))
    except (OSError, AttributeError):
        return False
