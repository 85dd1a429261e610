"""Questions and answers, shared by pretraining's fact probes, post-training, evaluation and the
nondeterminism study.

The QA line format as token ids (`codec`), grading an answer (`grading`), the model's greedy
answers with their probabilities (`answers`), calibration and selective-prediction metrics
(`metrics`) and the checks on a job's inputs (`inputs`). It sits below `train` in the data flow
(it needs only the model, decoding and the tokenizer), so every stage that asks questions shares
one format without importing another stage.
Import the pieces from their modules; this package stays import-light.
"""
