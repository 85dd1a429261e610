"""An agent: a model plus a tool plus a loop (see nextlab.agent.loop for the protocol).

    from nextlab.agent import ModelPolicy, Toolbox, lookup_records, run_agent, grade_episode
"""

from nextlab.agent.loop import (
    Answer,
    Episode,
    Policy,
    Reply,
    State,
    build_prompt,
    grade_episode,
    observation_line,
    parse_reply,
    run_agent,
    shorten,
)
from nextlab.agent.policy import ModelPolicy
from nextlab.agent.tools import Call, Malformed, Observation, Toolbox, lookup_records
from nextlab.agent.traces import tool_examples

__all__ = [
    "Answer", "Call", "Episode", "Malformed", "ModelPolicy", "Observation", "Policy", "Reply", "State",
    "Toolbox", "build_prompt", "grade_episode", "lookup_records", "observation_line", "parse_reply",
    "run_agent", "shorten", "tool_examples",
]
