"""Read once, ask many times, on a real book: a Locret session reads a novel chapter by chapter, is saved to a
file, loaded back and asked three questions.

    OMP_NUM_THREADS=1 python -m benchmark.session_demo --tokens 32768

Reads Pride and Prejudice (Project Gutenberg, header and footer stripped, from Chapter I) up to ``--tokens``
tokens, feeding whole chapters as text (the last one cut to fit, as token ids) after the chat template's
opening; each question follows as the rest of the user turn. Prints the reading time and speed, the session
file's size, save and load times, and each answer with its time. The book is in the training split of the
shipped heads' data, so this shows the mechanics and costs, not a held-out score.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch

import locret
from locret.acquire import load_tokenizer
from locret.hardware import resolve_dtype
from locret.scorers import RetainingHeadScorer
from locret.session import chat_prompt_parts

BOOK = Path(__file__).resolve().parents[1] / "../shared/data/gutenberg/pg1342_pride_and_prejudice.txt"
CHAPTER_HEADING = re.compile(r"^\s*chapter [ivxlc]+\.?\]?\s*$", re.IGNORECASE | re.MULTILINE)
QUESTIONS = (
    "Who has taken Netherfield Park?",
    "What is the name of the eldest Miss Bennet?",
    "Who said that Elizabeth was not handsome enough to tempt him?",
)
INSTRUCTION = "Answer in one short sentence from the novel above. "


def chapters(path: Path) -> list[str]:
    """The novel's chapters, each from its heading to the next (Gutenberg header, front matter and footer
    dropped)."""
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    text = text.split("*** START OF", 1)[1].split("\n", 1)[1].split("*** END OF", 1)[0]
    starts = [match.start() for match in CHAPTER_HEADING.finditer(text)]
    if not starts:
        raise ValueError(f"no chapter headings found in {path}")
    return [text[start:end] for start, end in zip(starts, starts[1:] + [len(text)], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--book", type=Path, default=BOOK)
    parser.add_argument("--tokens", type=int, default=32768, help="book tokens to read")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("runs/session_demo.safetensors"))
    args = parser.parse_args()
    started = time.perf_counter()
    model = locret.from_pretrained(args.model, dtype=resolve_dtype(args.dtype, torch.device("cpu"))).eval()
    tokenizer = load_tokenizer(args.model)
    config = locret.LocretConfig(budget=1024, chunk_size=512, n_stabilizers=256, n_local=64, score_pooling=7)
    prefix, template = chat_prompt_parts(tokenizer)
    session = locret.Session(
        model, config, tokenizer=tokenizer, question_template=template, scorer=RetainingHeadScorer()
    )
    print(f"model {args.model}, {model.dtype}, threads {torch.get_num_threads()}, {config}")

    reading = time.perf_counter()
    session.feed(prefix)
    book_tokens, fed_chapters = 0, 0
    for chapter in chapters(args.book):
        ids = tokenizer.encode(chapter, add_special_tokens=False)
        if book_tokens + len(ids) <= args.tokens:
            session.feed(chapter)  # as text: the session tokenizes it the same way
        else:
            ids = ids[: args.tokens - book_tokens]
            session.feed(ids)
        book_tokens += len(ids)
        fed_chapters += 1
        if book_tokens >= args.tokens:
            break
    read_seconds = time.perf_counter() - reading
    print(
        f"read {book_tokens} book tokens in {fed_chapters} chapters ({session.tokens_read} with the chat "
        f"opening) in {read_seconds:.1f} s = {session.tokens_read / read_seconds:.0f} tokens/s; "
        f"{session.cache.stored_length()} entries per KV head kept, {session.pending.shape[1]} tokens pending"
    )

    saving = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    session.save(args.out)
    save_seconds = time.perf_counter() - saving
    loading = time.perf_counter()
    loaded = locret.Session.load(args.out, model, tokenizer=tokenizer)
    load_seconds = time.perf_counter() - loading
    print(
        f"session file {args.out}: {args.out.stat().st_size / 2**20:.1f} MiB, saved in {save_seconds:.2f} s, "
        f"loaded in {load_seconds:.2f} s"
    )

    eos = model.generation_config.eos_token_id
    for number, question in enumerate(QUESTIONS, 1):
        answer = loaded.ask(INSTRUCTION + question, max_new_tokens=args.max_new_tokens, eos_token_id=eos)
        print(
            f"Q{number}: {question}\n    A: {answer.text.strip()!r}\n    "
            f"({answer.read_seconds:.1f} s reading the pending tokens and the question, "
            f"{answer.decode_seconds:.1f} s for {answer.token_ids.numel()} tokens)"
        )
        if number == 1:
            before = session.ask(INSTRUCTION + question, max_new_tokens=args.max_new_tokens, eos_token_id=eos)
            print(
                f"    the session before saving answers the same: {torch.equal(before.token_ids, answer.token_ids)}"
            )
    print(f"total wall time {time.perf_counter() - started:.1f} s (model loading included)")


if __name__ == "__main__":
    main()
