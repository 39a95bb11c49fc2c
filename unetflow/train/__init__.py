"""Training: the border weight map in 2-D and 3-D (`weights`), the training sources and their checks
(`sources`), the paper's augmentation (`augment`; in 3-D and the choice of sampler: `augment3d`), the
resumable training loop (`loop`) and its data-parallel processes on every GPU of a node (`distributed`)."""
