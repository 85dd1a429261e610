"""The GPT model every stage trains, post-trains and evaluates, and its checkpoints.

    from nextlab.model import GPT, GPTConfig, load_model
"""

from nextlab.model.checkpoint import load_model
from nextlab.model.gpt import GPT, GPTConfig, KVCache

__all__ = ["GPT", "GPTConfig", "KVCache", "load_model"]
