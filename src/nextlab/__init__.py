"""nextlab: the next-token lab.

A reproducible pipeline that builds a synthetic world, trains small GPT-style transformers on it,
post-trains them under different grading schemes and measures what they know, how often they
hallucinate, how calibrated they are, and how batching moves their greedy outputs.
"""

__version__ = "0.1.0"
