"""Made-up words from syllables: names of people, cities, trades and companies.

Every word is drawn from the same kind of syllable grammar, so no real name is privileged, and
a `WordMaker` never hands out the same word twice:

>>> import numpy as np
>>> maker = WordMaker(np.random.default_rng(0))
>>> maker.word(2) != maker.word(2)
True
"""

from __future__ import annotations

import numpy as np

ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "pr", "r", "s",
          "sh", "st", "t", "th", "tr", "v", "vr", "z", "zh", "qu", "y", "w", "c", "j"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ai", "ei", "ou", "ia", "y"]
CODAS = ["", "", "", "n", "r", "l", "s", "th", "m", "k", "x", "nd", "rt", "sk", "v"]

CITY_SUFFIXES = ["mor", "heim", "grad", "holm", "vale", "port", "stead", "mouth", "ford", "burg"]
TRADE_SUFFIXES = ["wright", "smith", "binder", "keeper", "monger", "weaver", "caster", "turner"]
MAX_SYLLABLES = 6
COMPANY_SUFFIXES = ["Works", "Holdings", "Company", "Guild", "Foundry", "Mills", "Trading House",
                    "Collective", "Consortium", "Manufactory"]


class WordMaker:
    """Draws made-up words, never the same one twice.

    When every word of a syllable count is taken (about 4,400 one-syllable words), requests for
    that count move on to one syllable more, so a world can name as many people as its params
    allow; the draws of a world that never runs out are unchanged by this.
    """

    TRIES = 10_000

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.used: set[str] = set()
        self.exhausted: set[int] = set()

    def _syllable(self) -> str:
        r = self.rng
        return ONSETS[r.integers(len(ONSETS))] + VOWELS[r.integers(len(VOWELS))] + CODAS[r.integers(len(CODAS))]

    def word(self, syllables: int, suffix: str = "", capitalize: bool = True) -> str:
        while syllables in self.exhausted:
            syllables += 1
        for _ in range(self.TRIES):
            stem = "".join(self._syllable() for _ in range(syllables)) + suffix
            stem = stem.capitalize() if capitalize else stem
            if stem not in self.used and len(stem) >= 3:
                self.used.add(stem)
                return stem
        if syllables >= MAX_SYLLABLES:
            raise RuntimeError("the syllable grammar is exhausted; ask for fewer words")
        self.exhausted.add(syllables)
        return self.word(syllables + 1, suffix, capitalize)

    def words(self, count: int, syllables: tuple[int, ...], suffixes: list[str] | None = None,
              capitalize: bool = True) -> list[str]:
        out = []
        for _ in range(count):
            n = int(self.rng.choice(syllables))
            suffix = suffixes[self.rng.integers(len(suffixes))] if suffixes else ""
            out.append(self.word(n, suffix, capitalize))
        return out
