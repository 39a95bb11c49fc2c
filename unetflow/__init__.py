"""unetflow: the U-Net paper end-to-end as a Snakemake workflow, at EM-dataset scale."""

__version__ = "0.1.0"
