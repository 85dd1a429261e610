"""The agent's one tool, `lookup(name)`, over the synthetic world's records, and how a parsed call
is executed. Whatever the model wrote, executing it returns an observation and never raises: a bad
call is the model's mistake, so it goes back to the model as an error to recover from.

    >>> tools = Toolbox({"Ada Quill": "Ada Quill was born in 1931."})
    >>> tools.execute(Call("lookup", "Ada Quill"))
    Observation(text='Ada Quill was born in 1931.', ok=True)
    >>> tools.execute(Call("lookup", " Bo Renk ")).text
    'no record of Bo Renk'
    >>> tools.execute(Call("search", "Ada Quill")).text
    "error: unknown tool 'search'; the tool is lookup(name)"
    >>> tools.execute(Call("lookup", "")).text
    'error: malformed call (empty name); the tool is lookup(name)'
    >>> tools.execute(Call("lookup", "Ada, Quill")).text
    'error: malformed call (lookup takes one name, got 2 arguments); the tool is lookup(name)'
    >>> tools.execute(Malformed("lookup", "lookup(Ada", "missing closing parenthesis"))
    Observation(text='error: malformed call (missing closing parenthesis); the tool is lookup(name)', ok=False)
"""

from __future__ import annotations

from dataclasses import dataclass

from nextlab.data.world import Person, World

TOOL = "lookup"
USAGE = f"the tool is {TOOL}(name)"


@dataclass(frozen=True)
class Call:
    """A syntactically whole call `tool(argument)`; whether the tool and argument are valid is for
    the toolbox to say."""

    tool: str
    argument: str


@dataclass(frozen=True)
class Malformed:
    """A reply that starts like a call but is not one (`lookup(Ada`, `lookup(a(b))`)."""

    tool: str
    text: str
    reason: str


@dataclass(frozen=True)
class Observation:
    text: str
    ok: bool  # a well-formed call of the real tool (a "no record" answer is still a good call)


# How a record states each attribute: the cue words of the corpus's first paraphrase, so the
# value follows words the model has read before it many times, in a line short enough that a
# record and a question fit the context window together.
RECORD_FIELDS = {
    "birth_year": "born in the year {value}",
    "birth_city": "born in the city of {value}",
    "occupation": "works as a {value}",
    "employer": "employed by {value}",
}


def record_text(person: Person) -> str:
    """A person's record: the name, then every attribute in the world's order.

    >>> record_text(Person("p1", "Ada Quill", {"birth_year": "1931", "employer": "Brightco"}, 2, "eval"))
    'Ada Quill: born in the year 1931; employed by Brightco.'
    """
    fields = "; ".join(RECORD_FIELDS[a].format(value=v) for a, v in person.attributes.items())
    return f"{person.name}: {fields}."


def lookup_records(world: World) -> dict[str, str]:
    """Each seen person's name -> their record. Never-seen names get no record: the tool knows
    exactly the people the pretraining corpus could have taught, no more. Should two seen people
    share a name, the first keeps it."""
    records: dict[str, str] = {}
    for person in world.people:
        if person.seen:
            records.setdefault(person.name, record_text(person))
    return records


class Toolbox:
    """Executes parsed calls against `records` (name -> record text)."""

    def __init__(self, records: dict[str, str]):
        self.records = records

    def execute(self, call: Call | Malformed) -> Observation:
        if call.tool != TOOL:
            return Observation(f"error: unknown tool '{call.tool}'; {USAGE}", ok=False)
        if isinstance(call, Malformed):
            return _malformed(call.reason)
        name = call.argument.strip()
        if "," in name:
            return _malformed(f"{TOOL} takes one name, got {len(name.split(','))} arguments")
        if not name:
            return _malformed("empty name")
        return Observation(self.records.get(name, f"no record of {name}"), ok=True)


def _malformed(reason: str) -> Observation:
    return Observation(f"error: malformed call ({reason}); {USAGE}", ok=False)
