"""Training: the ``train:`` section (registered on import), the trainer, checkpoints and run directories.

Only the section's checker is imported here; the trainer (torch, tqdm, matplotlib) is imported on use::

    from attngraph.training.trainer import Trainer
"""
from . import config  # noqa: F401  (registers the train: section)
