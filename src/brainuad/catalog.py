"""Facts about registered models that the workflow needs at parse time, without importing torch.

The Snakefile is parsed by every SLURM job (and by controller environments that have no torch), so
it must not import the model code. ``test_catalog_agrees_with_model_classes`` in
tests/models/test_models.py checks that these facts agree with the model classes.
"""

#: Models with nothing to train (no train job; the reconstruct job builds them from their hparams).
LEARNING_FREE = frozenset({"thresh"})
