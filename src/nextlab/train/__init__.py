"""Pretraining by next-token prediction: the loop, its schedule, checkpoints and fact probes.

Import the pieces from their modules (`nextlab.train.checkpoint`, `nextlab.train.loop`); this
package stays import-light so loading a checkpoint does not pull in plotting or tracking.
"""
