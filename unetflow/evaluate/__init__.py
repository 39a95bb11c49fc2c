"""Evaluation: every metric a function registered once (`registry`), computed on a prediction against its
labels. NumPy and SciPy only, so it runs anywhere."""
