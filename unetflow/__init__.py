"""unetflow: the U-Net paper end-to-end as a Snakemake workflow, at EM-dataset scale."""

import os

# Torch's OpenMP threads sleep at a barrier instead of spinning (libgomp's default spins first): on a machine
# that other processes share, a spinning thread burns the core its descheduled partner needs, and training
# slowed 3-5x when another job took part of one core (benchmarks/shared.py). Read when torch loads OpenMP,
# so it must be set before torch is imported; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
