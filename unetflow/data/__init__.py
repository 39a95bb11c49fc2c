"""Data in: downloads, the embedded synthetic volume (2-D slices: `synthesize`; neurites through a 3-D
volume: `synthesize3d`), the import into OME-Zarr and its reading back, label conventions (unannotated
pixels) and the raw image's alignment with its labels."""
