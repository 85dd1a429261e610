"""An agent is a model plus a tool plus a loop. Each step: build the prompt from the state, ask the
model, parse its reply into a tool call or a final answer, execute the call, add what it returned
to the state; stop at an answer or after `max_steps` replies.

The protocol is plain text in the QA format, so a model fine-tuned on QA lines needs nothing new to
read it. A prompt is the observations so far, one line each, then the question:

    lookup(Ada Quill) returned: Ada Quill was born in 1931. ... <|question|>In which year was Ada
    Quill born?<|answer|>

(with no observations, exactly the QA prompt `<|question|>...<|answer|>`). The reply is the text the
model writes after `<|answer|>`, up to `<|eos|>`: `name(argument)` is a call, anything else a final
answer. Worked example, with a scripted stand-in for the model:

    >>> from nextlab.agent.tools import Toolbox
    >>> script = iter([[Reply(" lookup(Ada Quill)")], [Reply(" 1931")]])
    >>> prompts = []
    >>> def policy(texts):
    ...     prompts.extend(texts)
    ...     return next(script)
    >>> [episode] = run_agent(policy, ["In which year was Ada Quill born?"],
    ...                       Toolbox({"Ada Quill": "Ada Quill was born in 1931."}), max_steps=4)
    >>> prompts[1]
    'lookup(Ada Quill) returned: Ada Quill was born in 1931. <|question|>In which year was Ada Quill born?<|answer|>'
    >>> episode.answer, episode.steps, episode.tool_calls, grade_episode(episode, "1931")
    ('1931', 2, 1, 'correct')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from nextlab.agent.tools import Call, Malformed, Toolbox
from nextlab.data.templates import ANSWER_TOKEN, QUESTION_TOKEN
from nextlab.qa.grading import Grade, grade

# A call attempt: an identifier right before "(". No answer in this world has a parenthesis (years,
# cities, trades, companies, "I don't know"), so this never takes an answer for a call.
_CALL_START = re.compile(r"[A-Za-z_]\w*\(")
# Where an observation line starts in a prompt: every line begins with the call that produced it.
_LINE_START = re.compile(r" (?=[A-Za-z_]\w*\()")


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass(frozen=True)
class Reply:
    text: str  # the decoded text after <|answer|>, without <|eos|>
    finished: bool = True  # the model emitted <|eos|> (False: it ran out of tokens)


Policy = Callable[[list[str]], list[Reply]]


@dataclass(frozen=True)
class State:
    question: str
    observations: tuple[str, ...] = ()  # rendered lines, oldest first


@dataclass
class Episode:
    question: str
    answer: str | None = None  # None until answered, and for good when the step limit was hit
    steps: int = 0  # policy calls made
    tool_calls: int = 0  # well-formed lookups
    bad_calls: int = 0  # unknown tools and malformed calls
    hit_limit: bool = False
    finished: bool = True  # the last reply ended with <|eos|>
    trace: list[tuple[str, str | None]] = field(default_factory=list)  # (reply, observation; None for the answer)

    @property
    def done(self) -> bool:
        return self.answer is not None or self.hit_limit

    @property
    def state(self) -> State:
        return State(self.question, tuple(observation_line(r, o) for r, o in self.trace if o is not None))


def parse_reply(text: str) -> Call | Answer | Malformed:
    """A call `tool(argument)`, a call attempt that is not whole, or a final answer.

    >>> parse_reply(" lookup(Ada Quill)")
    Call(tool='lookup', argument='Ada Quill')
    >>> parse_reply("lookup(Ada").reason, parse_reply("lookup(a) b").reason, parse_reply("f(a(b))").reason
    ('missing closing parenthesis', 'text after the closing parenthesis', 'parentheses inside the argument')
    >>> parse_reply(" Veltmor"), parse_reply("I don't know"), parse_reply("lookup")
    (Answer(text='Veltmor'), Answer(text="I don't know"), Answer(text='lookup'))
    """
    stripped = text.strip()
    start = _CALL_START.match(stripped)
    if start is None:
        return Answer(stripped)
    tool, rest = start.group()[:-1], stripped[start.end():]
    if not rest.endswith(")"):
        reason = "text after the closing parenthesis" if ")" in rest else "missing closing parenthesis"
        return Malformed(tool, stripped, reason)
    argument = rest[:-1]
    if "(" in argument or ")" in argument:
        return Malformed(tool, stripped, "parentheses inside the argument")
    return Call(tool, argument)


def observation_line(reply: str, observation: str) -> str:
    """One line of the prompt: the call as the model wrote it, then what came back. Whitespace is
    collapsed so that a line is a line whatever the model emitted.

    >>> observation_line(" lookup(Bo Renk)", "no record of Bo Renk")
    'lookup(Bo Renk) returned: no record of Bo Renk'
    """
    return f"{' '.join(reply.split())} returned: {' '.join(observation.split())}"


def build_prompt(state: State) -> str:
    """The prompt text (the policy adds <|bos|>): observation lines joined by spaces, then the
    question in the QA format, the reading documents' shape (see nextlab.mechanisms.in_context).

    >>> build_prompt(State("In which city was Ada Quill born?"))
    '<|question|>In which city was Ada Quill born?<|answer|>'
    """
    context = " ".join(state.observations)
    return f"{context + ' ' if context else ''}{QUESTION_TOKEN}{state.question}{ANSWER_TOKEN}"


def shorten(prompt: str) -> str | None:
    """The prompt without its oldest observation line, or None when only the question is left.

    Lines are found by where a call starts; a line that itself holds something call-like (an error
    naming `lookup(name)`) splits finer, which only makes the cut finer, still oldest first.

    >>> shorten("f(x) returned: a g(y) returned: b <|question|>Q?<|answer|>")
    'g(y) returned: b <|question|>Q?<|answer|>'
    >>> shorten("<|question|>Q?<|answer|>") is None
    True
    """
    context, marker, question = prompt.rpartition(QUESTION_TOKEN)
    lines = _LINE_START.split(context.strip()) if context.strip() else []
    if not lines:
        return None
    rest = " ".join(lines[1:])
    return f"{rest + ' ' if rest else ''}{marker}{question}"


def run_agent(policy: Policy, questions: list[str], tools: Toolbox, max_steps: int) -> list[Episode]:
    """Run every question to an answer or to `max_steps` policy calls, all in lockstep: each step is
    one batched policy call over the episodes still running (a finished one is never asked again)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    episodes = [Episode(q) for q in questions]
    for _ in range(max_steps):
        active = [e for e in episodes if not e.done]
        if not active:
            break
        replies = policy([build_prompt(e.state) for e in active])
        if len(replies) != len(active):
            raise ValueError(f"the policy returned {len(replies)} replies for {len(active)} prompts")
        for episode, reply in zip(active, replies):
            _step(episode, reply, tools, max_steps)
    return episodes


def _step(episode: Episode, reply: Reply, tools: Toolbox, max_steps: int) -> None:
    episode.steps += 1
    episode.finished = reply.finished
    # A reply cut off by the token budget is not a call to act on: it ends the episode as its answer,
    # graded wrong like an unfinished QA answer.
    parsed = parse_reply(reply.text) if reply.finished else Answer(reply.text.strip())
    if isinstance(parsed, Answer):
        episode.answer = parsed.text
        episode.trace.append((reply.text, None))
        return
    observation = tools.execute(parsed)
    if observation.ok:
        episode.tool_calls += 1
    else:
        episode.bad_calls += 1
    episode.trace.append((reply.text, observation.text))
    episode.hit_limit = episode.steps >= max_steps


def grade_episode(episode: Episode, gold: str) -> Grade:
    """`abstain` when the step limit came first (no answer was given), `wrong` when the final reply
    never ended (as nextlab.qa.codec.graded), else the answer graded against `gold`."""
    if episode.hit_limit or episode.answer is None:
        return "abstain"
    if not episode.finished:
        return "wrong"
    return grade(episode.answer, gold)
