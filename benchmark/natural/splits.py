"""The fixed evaluation splits of the natural-text tasks (the project's SPLITS.md; never change them).

Books and NQ questions listed under TRAIN may be used to train heads; VALIDATION chooses recipes and
settings; TEST is reported once per shipped version and never used to choose anything.
"""

from typing import Literal

from locret.train.natural_data import NQ_TRAIN_QUESTIONS

Split = Literal["validation", "test"]
SPLITS: tuple[Split, ...] = ("validation", "test")

TRAIN_BOOKS = (
    "pg3261_news_from_nowhere",
    "pg16215_jack_sheppard",
    "pg972_devils_dictionary",
    "pg308_three_men_in_a_boat",
    "pg1342_pride_and_prejudice",
    "tinyshakespeare",
)
HAYSTACK_BOOKS: dict[Split, tuple[str, ...]] = {
    "validation": ("pg120_treasure_island", "pg16_peter_pan"),
    "test": ("pg219_heart_of_darkness", "pg244_a_study_in_scarlet", "pg2852_hound_of_the_baskervilles"),
}

NQ_TRAIN = NQ_TRAIN_QUESTIONS  # the questions locret.train draws its multi-passage prompts from
NQ_QUESTIONS: dict[Split, range] = {"validation": range(2000, 2300), "test": range(2300, 2655)}


def check_split(split: str) -> Split:
    """``split`` if it is an evaluation split, else a ValueError naming the valid ones."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split  # type: ignore[return-value]
