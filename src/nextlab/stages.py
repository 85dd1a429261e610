"""The stages of a study, written once, in the order of the data flow.

Each stage is one `nextlab <stage>` subcommand (module `nextlab.cli.<stage>`), one rule file
(workflow/rules/<stage>.smk) and, where it has settings, one params section. A stage may need the
synthetic world (left out when a user corpus replaces it) or be switched on by its section's
`enabled` flag. Adding a stage is adding it here, with its module, rule file and section::

    >>> NAMES[:4]
    ('data', 'tokenize', 'train', 'sft')
    >>> [s.name for s in STAGES if s.switched]
    ['mechanisms', 'positions', 'agent']

Which stages a study runs follows from its params alone::

    >>> from types import SimpleNamespace as NS
    >>> study = NS(data=NS(synthetic=False), mechanisms=NS(enabled=True))
    >>> planned(study)
    ['data', 'tokenize', 'train', 'nondeterminism', 'report']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    name: str
    world: bool = False  # needs the synthetic world's people, facts and questions
    switched: bool = False  # runs only when its params section says `enabled: true`

    def runs(self, study: Any) -> bool:
        """Whether a study with these params runs the stage."""
        if self.world and not study.data.synthetic:
            return False
        return not self.switched or getattr(study, self.name).enabled


STAGES = (
    Stage("data"),
    Stage("tokenize"),
    Stage("train"),
    Stage("sft", world=True),
    Stage("posttrain", world=True),
    Stage("evaluate", world=True),
    Stage("nondeterminism"),
    Stage("mechanisms", world=True, switched=True),
    Stage("positions", world=True, switched=True),
    Stage("agent", world=True, switched=True),
    Stage("report"),
)
NAMES = tuple(s.name for s in STAGES)
WORLD_STAGES = tuple(s.name for s in STAGES if s.world)


def planned(study: Any) -> list[str]:
    """The stages the study runs, in the order of the data flow."""
    return [s.name for s in STAGES if s.runs(study)]
