"""The GPT model every stage trains, post-trains and evaluates.

    from nextlab.model import GPT, GPTConfig
"""

from nextlab.model.gpt import GPT, GPTConfig, KVCache

__all__ = ["GPT", "GPTConfig", "KVCache"]
