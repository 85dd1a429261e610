"""Pretraining by next-token prediction: the loop, its schedule, batches and fact probes.

Import the pieces from their modules (`nextlab.train.loop`, `nextlab.train.stage`); this package
stays import-light so importing one piece does not pull in plotting or tracking. Checkpoints and
devices live beside the model (`nextlab.model.checkpoint`, `nextlab.model.device`).
"""
