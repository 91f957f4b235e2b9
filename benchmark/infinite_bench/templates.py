"""InfiniteBench prompt templates and generation lengths, as published.

Source: OpenBMB/InfiniteBench ``src/prompt.py`` (``gpt4_templates`` for chat
models, ``yarn_mistral_templates`` for base models that continue a completion)
and ``src/eval_utils.py`` (``DATA_NAME_TO_MAX_NEW_TOKENS``). Every template has
one ``{context}``; what precedes it is the sample prefix, what follows it is the
question, fed only after the context has been prefilled and evicted.
"""

from typing import Literal

from locret.demo import PASSKEY_COMPLETION_TEMPLATE

Style = Literal["chat", "completion"]

_FIND_IT = "There is an important info hidden inside a lot of irrelevant text. Find it"
_CHOICE_ABCD = "A. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}"
_MASK_INTRO = (
    "Below is a dialogue script where one random occurrence of a character name is replaced with "
    '"$$MASK$$", and you should try to guess who that character is.'
)

TEMPLATES: dict[Style, dict[str, str]] = {
    "chat": {
        "passkey": _FIND_IT + " and memorize them. I will quiz you about the important information"
        " there.\n\n{context}\n\n{input}",
        "number_string": _FIND_IT + ". I will quiz you about the important information there."
        "\n\n{context}\n\n{input}",
        "kv_retrieval": "Extract the value corresponding to the specified key in the JSON object"
        " below.\n\n{context}\n\n{input}",
        "longbook_qa_eng": "Read the book below and answer a question.\n\n{context}\n\nQuestion:"
        " {question}\n\nBe very concise.",
        "longbook_choice_eng": "Read the book and answer the question.\n\n{context}\n\nQuestion:"
        " {question}\n\nOnly one of the following options is correct, tell me the answer using"
        " one single letter (A, B, C, or D). Don't say anything else.\n" + _CHOICE_ABCD,
        "longbook_sum_eng": "Summarize the following book.\n\n{context}",
        "math_find": "{prefix}\n\n{context}\n\n{input}",
        "code_debug": "There is ONLY ONE function in the large project that is deliberately made"
        " to include an obvious error. Please find the function that contains the most obvious"
        " errors. I will give you four options to narrow your scope. You can inspect the options"
        " and think. Eventually, tell me the answer using one single letter (A, B, C, or D).\n\n"
        "{context}\n\nWhich funtion has deliberate error?\n" + _CHOICE_ABCD + "\n\nYou should"
        " first find the functions in the options. Repeat their content, inspect through code,"
        " and at last give me your answer for the function that has the deliberate and obvious"
        " error in A, B, C, or D.",
        "longdialogue_qa_eng": _MASK_INTRO + "\n\nThe dialogue:\n\n---\n\n{context}\n\n---\n\n"
        'End of dialogue.\n\nWhich character is most likely "$$MASK$$"? Just say the name used'
        " by the scriptwriter (before the colon marks) of one single character and nothing else.",
    },
    "completion": {
        "passkey": PASSKEY_COMPLETION_TEMPLATE,  # the demo's (locret.demo)
        "number_string": _FIND_IT + ". I will quiz you about the important information there."
        "\n\n{context}\n\n{input}\n\nThe sequence of digits is",
        "kv_retrieval": "Extract the value corresponding to the specified key in the JSON object"
        " below.\n\n{context}\n\n{input}",
        "longbook_sum_eng": "Summarize the book below.\n\n{context}\n\nSummary:",
        "longbook_choice_eng": "Read the book and answer the question.\n\n{context}\n\nQuestion:"
        " {question}\n" + _CHOICE_ABCD + "\n\nThe letter of the correct answer is",
        "longbook_qa_eng": "Read the book and answer the question. Be very concise in your answer."
        "\n\n{context}\n\nQuestion: {question}\nAnswer:",
        "math_find": "{prefix}\n\n{context}\n\n{input}",
        "code_debug": "Following is a Python code where exactly one of the functions/methods has a"
        " deliberate error that makes it crash.\n\n{context}\n\nOptions:\n"
        + _CHOICE_ABCD
        + "\n\nThe correct option is:",
        "longdialogue_qa_eng": _MASK_INTRO + "\n\n{context}\n\nThe name that has been replaced"
        " with $$MASK$$ is likely",
    },
}

MAX_NEW_TOKENS: dict[str, int] = {
    "passkey": 6,
    "number_string": 12,
    "kv_retrieval": 50,
    "longbook_sum_eng": 1200,
    "longbook_choice_eng": 40,
    "longbook_qa_eng": 40,
    "longdialogue_qa_eng": 40,
    "math_find": 3,
    "code_debug": 5,
}


def split_template(task: str, style: Style, **fields: str) -> tuple[str, str]:
    """Fill a template's fields and return ``(prefix, question)`` around ``{context}``."""
    prefix, question = TEMPLATES[style][task].split("{context}")
    return prefix.format(**fields), question.format(**fields)
