"""Export of a training checkpoint to a deployable model bundle. Needs the ``train`` extra."""
