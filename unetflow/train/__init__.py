"""Training: the border weight map (`weights`), the training sources and their checks (`sources`), the
paper's augmentation (`augment`), the resumable training loop (`loop`) and its data-parallel processes on
every GPU of a node (`distributed`)."""
