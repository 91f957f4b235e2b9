"""Load L-Eval closed-ended tasks: one sample per instruction of each long document.

Prompts follow OpenLMLab/LEval ``Baselines/LEval_config.py`` (system prompts,
typos included) and the ``exam_eval`` branch of its baseline scripts, without
any model-specific chat markers (the harness applies the chat template). Data
is GPL-3.0: it is read by path from a local copy or fetched from the hub, never
vendored.
"""

import re
from itertools import islice
from typing import Any

from benchmark.sample import Sample
from benchmark.text import Tokenizer, fit_to_length, iter_jsonl, make_counter, resolve_file

HUB_DATASET = "L4NLP/LEval"
TASKS = ("coursera", "gsm100", "quality", "sci_fi", "topic_retrieval_longchat", "tpo")

_EXAM_SYSTEM = (
    "Now you are given a very long document. Please follow the instruction based on this"
    " document. For multi-choice questions, there is only a sinlge correct option. Please only"
    " provide the letter corresponding to the answer (like A or B) when answering. For other"
    " questions, please directly give the concise and accurate answer. "
)
SYSTEM_PROMPTS = {
    "gsm100": "Given several question answer pairs, you need to follow a similar format to answer"
    " the last question. Make sure the response is end with The answer is _ . ",
    "topic_retrieval_longchat": "Below is a record of our previous conversation on many different"
    " topics. You are the ASSISTANT, and I am the USER. At the beginning of each topic, the USER"
    " will say 'I would like to discuss the topic of <TOPIC>'. Memorize each <TOPIC>. At the end"
    " of the record, I will ask you to retrieve the first/second/third topic names. Now the"
    " record start. ",
    "coursera": "Now you are given a very long document. Please follow the instruction based on"
    " this document. For multi-choice questions, there could be a sinlge correct option or"
    " multiple correct options. Please only provide the letter corresponding to the answer (like"
    " A or AB) when answering. ",
    "sci_fi": "Now you are given a scientific fiction. I will ask you some questions and the"
    ' answer should be "True" or "False". Notice that you should answer the question based on'
    " the evidence in the document instead of your background knowledge.",
    "quality": _EXAM_SYSTEM,
    "tpo": _EXAM_SYSTEM,
}
# L-Eval generates up to 512 tokens for every task; its scorers only read the first
# letters / words of a reply, so closed-ended answers get short budgets (gsm100 keeps
# room for its chain of thought).
MAX_NEW_TOKENS = {
    "coursera": 16,
    "gsm100": 256,
    "quality": 16,
    "sci_fi": 16,
    "topic_retrieval_longchat": 32,
    "tpo": 16,
}


def gold_letters(output: str) -> str:
    """L-Eval's ``process_gt_mc``: the A-D letters of the first word ("(B) text" -> "B")."""
    return re.sub(r"[^A-D]", "", output.split()[0]) or "A"


def math_answer(text: str) -> str:
    """L-Eval's ``process_math``: the number after "The answer is", else the last number."""
    match = re.search(r"The answer is (\S+)", text)
    if match:
        found = match.group(1)
    else:
        words = text.split("\n\n")[0].split(" ")[::-1]
        found = next((w for w in words if any(c.isdigit() for c in w)), "")
    digits = ""
    for ch in found:
        if ch == ".":
            break
        if ch.isdigit():
            digits += ch
    return digits


def _answers(task: str, output: str) -> tuple[list[str], dict[str, str]]:
    if task in ("coursera", "quality", "tpo"):
        return [gold_letters(output)], {"raw_answer": output}
    if task == "gsm100":
        return [math_answer(output)], {"raw_answer": output}
    if task == "sci_fi":
        loyalty, _, fact = output.partition("[fact:")
        return [loyalty.strip()], {"fact": fact.rstrip("]").strip()}
    return [output], {}


def _split_prompt(task: str, instruction: str) -> tuple[str, str]:
    """(prefix, question) around the document, as L-Eval's exam_eval scripts build them."""
    system = SYSTEM_PROMPTS[task].rstrip() + "\n\n"
    if task in ("gsm100", "topic_retrieval_longchat"):
        return system, "\n\n" + instruction
    question = (
        f" \nQuestion: {instruction}.  Please directly give the answer without any additional"
        " output or explanation \nAnswer:"
    )
    return system + "Document is as follows. ", question


def document_to_samples(record: dict[str, Any], task: str, doc_index: int) -> list[Sample]:
    """One sample per (instruction, output) pair of an L-Eval document."""
    samples = []
    for i, (instruction, output) in enumerate(zip(record["instructions"], record["outputs"], strict=True)):
        prefix, question = _split_prompt(task, instruction)
        answers, meta = _answers(task, output)
        samples.append(
            Sample(
                id=f"leval_{task}_{doc_index}_{i}",
                context=record["input"],
                question=question,
                answers=answers,
                task=f"leval_{task}",
                max_new_tokens=MAX_NEW_TOKENS[task],
                meta={
                    "instruction": instruction,
                    "source": record.get("source", ""),
                    **meta,
                },
                prefix=prefix,
            )
        )
    return samples


def _records(task: str, data_dir: str | None):
    if data_dir is not None:
        yield from iter_jsonl(resolve_file(data_dir, f"{task}.jsonl", "leval"))
        return
    try:
        from datasets import load_dataset

        dataset = load_dataset(HUB_DATASET, task, split="test")
    except Exception as e:  # offline, missing config, hub error: all need the same advice
        raise RuntimeError(
            f"could not load L-Eval task {task!r} from the hub ({HUB_DATASET}): {e}. "
            f"Offline, pass data_dir pointing at a local {task}.jsonl instead."
        ) from e
    yield from dataset


def load_leval(
    task: str,
    data_dir: str | None = None,
    *,
    n: int | None = None,
    tokenizer: Tokenizer | None = None,
    max_tokens: int | None = None,
) -> list[Sample]:
    """The first ``n`` instructions of an L-Eval task, documents cut to ``max_tokens``.

    Like L-Eval, truncation keeps the beginning of the document, and it cuts a
    document the same way for all its questions (room for the longest), so they
    can share its prefill. ``data_dir`` may be the jsonl file, its directory, or
    a data root with a ``leval/`` folder.
    """
    if task not in TASKS:
        raise ValueError(f"unknown L-Eval task {task!r}; valid: {', '.join(TASKS)}")
    if max_tokens is not None and tokenizer is None:
        raise ValueError("truncating to max_tokens needs a tokenizer")
    samples = (s for d, r in enumerate(_records(task, data_dir)) for s in document_to_samples(r, task, d))
    selected = list(islice(samples, n))
    if max_tokens is not None and tokenizer is not None:
        count = make_counter(tokenizer)  # the count fit_to_length reserves by default
        longest: dict[str, int] = {}
        for s in selected:
            longest[s.context] = max(longest.get(s.context, 0), count(s.question))
        selected = [fit_to_length(s, max_tokens, tokenizer, "head", longest[s.context]) for s in selected]
    return selected
