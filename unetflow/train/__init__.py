"""Training: the border weight map (`weights`), the training sources and their checks (`sources`), the
paper's augmentation (`augment`) and the resumable training loop (`loop`)."""
