"""Data in: downloads, the embedded synthetic volume, the import into OME-Zarr and its reading back, label
conventions (unannotated pixels) and the raw image's alignment with its labels."""
