"""brainuad: deep generative models for unsupervised anomaly detection in brain MRI.

The library is importable without Snakemake; the workflow in ``workflow/`` only calls it.
"""

__version__ = "0.1.0"
