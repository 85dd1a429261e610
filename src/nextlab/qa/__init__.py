"""Questions and answers, shared by post-training, evaluation and the nondeterminism study.

The QA line format as token ids (`codec`), grading an answer (`grading`), the model's greedy
answers with their probabilities (`answers`), calibration and selective-prediction metrics
(`metrics`) and the checks on a job's inputs (`inputs`). It sits between `train` and
`posttrain` in the data flow, so the later stages share it without importing each other.
Import the pieces from their modules; this package stays import-light.
"""
