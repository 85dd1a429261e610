"""The data stage: a synthetic world of fictional people, its corpus and its QA sets."""

from nextlab.data.world import IDK, Person, World, build_world

__all__ = ["IDK", "Person", "World", "build_world"]
