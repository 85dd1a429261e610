"""Params of the tokenize stage."""

from pydantic import Field

from nextlab.config.base import Section

# Special tokens: document boundaries, padding, and the QA format. Their ids are 0..5 in this order.
SPECIAL_TOKENS = (
    "<|bos|>",
    "<|eos|>",
    "<|pad|>",
    "<|question|>",
    "<|answer|>",
    "<|confidence|>",
)
BYTE_ALPHABET = 256


class TokenizerParams(Section):
    vocab_size: int = Field(
        1024,
        ge=BYTE_ALPHABET + len(SPECIAL_TOKENS),
        le=1 << 20,
        description="BPE vocabulary including the 256 bytes and the special tokens",
    )
    min_frequency: int = Field(2, ge=1, description="pairs seen fewer times are not merged")
