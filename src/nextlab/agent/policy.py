"""A trained GPT as the agent's policy: prompt texts in, greedy replies out, one batch at a time.

    >>> from nextlab.model import GPT, GPTConfig
    >>> from nextlab.qa.codec import QACodec
    >>> from nextlab.tokenizer import train_bpe
    >>> tok = train_bpe(["Ada Quill was born in 1931. lookup(Ada Quill) returned:"] * 20, vocab_size=300)
    >>> model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=48, n_layer=1, n_head=1, d_model=8))
    >>> policy = ModelPolicy(model, tok, QACodec(tok), max_new_tokens=4)
    >>> replies = policy(["<|question|>In which year was Ada Quill born?<|answer|>",
    ...                   "Ada Quill was born in 1931. " * 20 + "<|question|>Q?<|answer|>"])   # too long: cut
    >>> len(replies), policy.truncated, type(replies[0].text), type(replies[0].finished)
    (2, 1, <class 'str'>, <class 'bool'>)
"""

from __future__ import annotations

from typing import Any

import torch

from nextlab.agent.loop import Reply, shorten
from nextlab.generate import generate
from nextlab.qa.codec import QACodec
from nextlab.tokenizer import BOS_ID


class ModelPolicy:
    """Callable `list[str] -> list[Reply]`: each text encoded after <|bos|>, continued greedily for
    at most `max_new_tokens`, and decoded with the codec (the text before <|eos|>, and whether the
    model got there)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, codec: QACodec, max_new_tokens: int,
                 batch_size: int = 64):
        block_size = model.config.block_size
        if not 1 <= max_new_tokens <= block_size - 2:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in "
                             f"block_size={block_size}")
        self.model, self.tokenizer, self.codec = model, tokenizer, codec
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.room = block_size - max_new_tokens  # the longest prompt, in tokens, that leaves room to reply
        self.truncated = 0  # prompts shortened to fit so far

    def _ids(self, text: str) -> list[int]:
        return [BOS_ID, *self.tokenizer.encode(text, add_special_tokens=False).ids]

    def encode(self, text: str) -> list[int]:
        """The prompt's ids, shortened to fit the context window: the oldest observations go first,
        because the newest is the one the model needs (it answers what was just looked up) and the
        question must stay whole to be answered at all."""
        ids = self._ids(text)
        if len(ids) <= self.room:
            return ids
        self.truncated += 1
        while len(ids) > self.room and (shorter := shorten(text)) is not None:
            text = shorter
            ids = self._ids(text)
        if len(ids) > self.room:
            # Only a question longer than the window is left; keep its end, where the answer starts.
            ids = [BOS_ID, *ids[len(ids) - self.room + 1:]]
        return ids

    def __call__(self, prompts: list[str]) -> list[Reply]:
        ids = [self.encode(text) for text in prompts]
        replies: list[Reply] = []
        for start in range(0, len(ids), self.batch_size):
            out = generate(self.model, ids[start:start + self.batch_size], max_new_tokens=self.max_new_tokens,
                           temperature=0.0)
            for tokens in out.tokens:
                decoded = self.codec.decode(tokens)
                replies.append(Reply(decoded.answer, decoded.finished))
        return replies
