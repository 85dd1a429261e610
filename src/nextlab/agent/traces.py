"""Tool-use fine-tuning examples: teach a QA model to look a name up before answering.

Each question becomes two supervised steps of one episode, in exactly the text the loop produces:

    <|bos|><|question|>In which year was Ada Quill born?<|answer|>            ->  lookup(Ada Quill)<|eos|>
    <|bos|>lookup(Ada Quill) returned: Ada Quill was born in 1931. ...
           <|question|>In which year was Ada Quill born?<|answer|>            ->  1931<|eos|>

A never-seen name's lookup returns "no record of <name>", and the answer there is "I don't know":
the record, not memory, is what the model learns to answer from.

    >>> from nextlab.tokenizer import train_bpe
    >>> from nextlab.qa.codec import QACodec
    >>> tok = train_bpe(["Ada Quill was born in 1931. lookup(Ada Quill) returned:"] * 20, vocab_size=300)
    >>> codec = QACodec(tok)
    >>> rows = [{"name": "Ada Quill", "question": "In which year was Ada Quill born?", "answer": "1931"}]
    >>> call, answer = tool_examples(rows, {"Ada Quill": "Ada Quill was born in 1931."}, codec, tok)
    >>> call.prompt == codec.prompt(rows[0]["question"]), codec.decode(call.target).answer
    (True, ' lookup(Ada Quill)')
    >>> codec.decode(answer.target).answer
    ' 1931'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nextlab.agent.loop import State, build_prompt, observation_line
from nextlab.agent.tools import TOOL, Call, Toolbox
from nextlab.posttrain.sft import Example
from nextlab.qa.codec import QACodec
from nextlab.tokenizer import BOS_ID


def tool_examples(qa_rows: Iterable[Mapping[str, Any]], records: dict[str, str], codec: QACodec,
                  tokenizer: Any) -> list[Example]:
    """Two examples per row (a dict with `name`, `question`, `answer`): the call, then the answer
    after its observation. The observation is the toolbox's own, so training sees what the loop does."""
    tools = Toolbox(records)
    examples = []
    for row in qa_rows:
        call = f"{TOOL}({row['name']})"
        observation = tools.execute(Call(TOOL, row["name"])).text
        asked = State(row["question"])
        looked_up = State(row["question"], (observation_line(call, observation),))
        examples.append(Example(_prompt(asked, tokenizer), codec.answer(call)))
        examples.append(Example(_prompt(looked_up, tokenizer), codec.answer(row["answer"])))
    return examples


def _prompt(state: State, tokenizer: Any) -> list[int]:
    return [BOS_ID, *tokenizer.encode(build_prompt(state), add_special_tokens=False).ids]
