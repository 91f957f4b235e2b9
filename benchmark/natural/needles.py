"""Needle sentences: templates of five kinds, split into validation and test, and seeded random values.

A template is a statement ending in its value ("The name of the lighthouse keeper's cat was {value}."),
the question that asks for it, and the answer prefix (the statement up to the value) that completion-style
prompts end with. Validation and test templates share no wording, so a recipe chosen on validation is not
tuned to the test sentences.
"""

import random
from dataclasses import dataclass
from typing import Literal

from benchmark.natural.splits import Split

Kind = Literal["number", "name", "place", "date", "phrase"]
KINDS: tuple[Kind, ...] = ("number", "name", "place", "date", "phrase")


@dataclass(frozen=True)
class NeedleTemplate:
    kind: Kind
    statement: str  # ends with "{value}."
    question: str

    def __post_init__(self) -> None:
        if not self.statement.endswith("{value}.") or self.statement.count("{value}") != 1:
            raise ValueError(f"a needle statement must end with '{{value}}.': {self.statement!r}")

    @property
    def answer_prefix(self) -> str:
        """The statement up to its value: what a completion prompt ends with."""
        return self.statement[: -len("{value}.")].rstrip()

    def sentence(self, value: str) -> str:
        return self.statement.format(value=value)


def _t(kind: Kind, statement: str, question: str) -> NeedleTemplate:
    return NeedleTemplate(kind, statement, question)


TEMPLATES: dict[Split, tuple[NeedleTemplate, ...]] = {
    "validation": (
        _t(
            "number",
            "The combination of the old sea chest was {value}.",
            "What was the combination of the old sea chest?",
        ),
        _t(
            "number",
            "The number painted on the harbour master's door was {value}.",
            "What number was painted on the harbour master's door?",
        ),
        _t(
            "name",
            "The name of the lighthouse keeper's cat was {value}.",
            "What was the name of the lighthouse keeper's cat?",
        ),
        _t(
            "name",
            "The captain of the night ferry was called {value}.",
            "What was the captain of the night ferry called?",
        ),
        _t(
            "place",
            "The lighthouse keeper's sister lived in {value}.",
            "Where did the lighthouse keeper's sister live?",
        ),
        _t(
            "place",
            "The stolen clock was finally found in {value}.",
            "Where was the stolen clock finally found?",
        ),
        _t(
            "date",
            "The bridge over the mill stream was opened on {value}.",
            "On what date was the bridge over the mill stream opened?",
        ),
        _t(
            "date",
            "The last letter from the schoolmaster was written on {value}.",
            "On what date was the last letter from the schoolmaster written?",
        ),
        _t(
            "phrase",
            "The password for the harbour gate was {value}.",
            "What was the password for the harbour gate?",
        ),
        _t(
            "phrase",
            "The gardener's favourite saying was {value}.",
            "What was the gardener's favourite saying?",
        ),
    ),
    "test": (
        _t(
            "number",
            "The telephone number of the village doctor was {value}.",
            "What was the telephone number of the village doctor?",
        ),
        _t(
            "number",
            "The serial number stamped on the brass telescope was {value}.",
            "What serial number was stamped on the brass telescope?",
        ),
        _t(
            "name",
            "The baker's youngest daughter was named {value}.",
            "What was the baker's youngest daughter named?",
        ),
        _t(
            "name",
            "The horse that won the county race was called {value}.",
            "What was the horse that won the county race called?",
        ),
        _t("place", "The retired colonel was born in {value}.", "Where was the retired colonel born?"),
        _t(
            "place",
            "The missing painting had been shipped to {value}.",
            "Where had the missing painting been shipped?",
        ),
        _t("date", "The old chapel burned down on {value}.", "On what date did the old chapel burn down?"),
        _t(
            "date",
            "The innkeeper's wedding took place on {value}.",
            "On what date did the innkeeper's wedding take place?",
        ),
        _t(
            "phrase",
            "The code word for the north gate was {value}.",
            "What was the code word for the north gate?",
        ),
        _t(
            "phrase",
            "The message carved above the cellar door read {value}.",
            "What did the message carved above the cellar door read?",
        ),
    ),
}

_NAMES = (
    "Marzipan", "Ottoline", "Bartholomew", "Ysolde", "Peregrine", "Clementine", "Thaddeus", "Wilhelmina",
    "Evander", "Philippa", "Leopold", "Rosalind", "Cornelius", "Imogen", "Ambrose", "Henrietta",
    "Lysander", "Beatrix", "Octavian", "Seraphina", "Fitzgerald", "Araminta", "Montague", "Griselda",
)  # fmt: skip
_PLACES = (
    "Valparaiso", "Samarkand", "Reykjavik", "Timbuktu", "Montevideo", "Trondheim", "Zanzibar", "Ljubljana",
    "Mandalay", "Tbilisi", "Cartagena", "Winnipeg", "Antananarivo", "Ulaanbaatar", "Kathmandu", "Marrakesh",
    "Tallinn", "Adelaide", "Quito", "Nagasaki", "Dubrovnik", "Asmara", "Bratislava", "Halifax",
)  # fmt: skip
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)  # fmt: skip
_ADJECTIVES = (
    "silver", "crimson", "quiet", "crooked", "golden", "frozen", "velvet", "hollow", "amber", "painted",
    "sleeping", "copper", "wandering", "broken", "emerald", "patient",
)  # fmt: skip
_NOUNS = (
    "lantern", "umbrella", "harbour", "violin", "orchard", "compass", "teapot", "meadow", "anchor", "sparrow",
    "chimney", "lighthouse", "pocketwatch", "tortoise", "windmill", "kettle",
)  # fmt: skip


def random_value(kind: Kind, rng: random.Random) -> str:
    """A value of ``kind``: 7 digits, a first name, a city, a date, or an adjective-noun phrase."""
    if kind == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "name":
        return rng.choice(_NAMES)
    if kind == "place":
        return rng.choice(_PLACES)
    if kind == "date":
        return f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.randint(1700, 1999)}"
    if kind == "phrase":
        return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    raise ValueError(f"unknown needle kind {kind!r}; valid kinds: {', '.join(KINDS)}")
