"""Build the shipped Q&A set and generation prompts from the offline prose corpus.

    python bench/make_qa.py                        # writes bench/data/qa.jsonl and bench/data/prompts.txt
    python bench/make_qa.py --min-count 3 --min-share 0.7 --max-per-answer 3   # the defaults

Q&A items are relation clozes read off the corpus's *train* split, so every answer is something the
models saw in training: "Joshua the son of" -> "Nun", "Og king of" -> "Bashan", "Lady Catherine de"
-> "Bourgh". How they are found:

1. Every paragraph is split on whitespace. A *context* is 3..6 consecutive plain words (letters, an
   optional trailing comma, or a title such as `Mr.`; no quotes, no sentence ends) inside one
   paragraph; its *completions* are the words that follow it, without their punctuation.
2. Contexts that are followed at least once by a capitalised name are candidates; for each of them
   every completion in the corpus is counted, whatever the word.
3. A candidate becomes an item when it occurs at least `--min-count` times and one completion, a
   capitalised name (not a title like "Mrs"), is at least `--min-share` of all of them, so the answer
   is determined by the training text. Only the *shortest* such context is kept (a longer one that
   ends with it adds nothing), and never one that already contains its answer (that is copying) or
   one in capitals (a heading).
4. To keep the set varied, at most `--max-per-answer` items share an answer (the most frequent
   contexts win).

Each line of qa.jsonl is `{"prompt", "answers", "count", "share", "source"}`: the context, the answer
(one name), how often the context occurs in train.txt, the answer's share of its completions, and the
book it comes from (austen, moby_dick, world_english_bible). prompts.txt holds generation prompts:
the first words (up to the first comma, 4..9 words) of paragraphs from the held-out validation and
test splits, one per line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA_DIR = Path(__file__).resolve().parent / "data"
MIN_CONTEXT, MAX_CONTEXT = 3, 6  # words in a context
PLAIN_WORD = re.compile(r"^(?:[A-Za-z][A-Za-z'’-]*,?|Mr\.|Mrs\.|Dr\.|St\.)$")  # no quotes, no sentence ends
NAME = re.compile(r"^[A-Z][A-Za-z]+$")  # a capitalised word of two letters or more: the answers are names
TITLES = {"Mr", "Mrs", "Miss", "Ms", "Dr", "Sir", "Lady", "Lord", "Captain", "Colonel", "Admiral", "St"}
TRAILING = re.compile(r"(?:['’]s)?[^A-Za-z]*$")  # punctuation and a possessive 's after a word
LEADING = re.compile(r"^[^A-Za-z]+")


def completion_word(token: str) -> str:
    """The word a whitespace token holds, without surrounding punctuation or a possessive 's."""
    return TRAILING.sub("", LEADING.sub("", token))


def contexts_before(words: list[str], i: int):
    """The contexts (MIN_CONTEXT..MAX_CONTEXT plain words) that end at words[i], shortest first."""
    for n in range(1, MAX_CONTEXT + 1):
        start = i + 1 - n
        if start < 0 or not PLAIN_WORD.match(words[start]):
            return  # a longer context would cross the same boundary
        if n >= MIN_CONTEXT:
            yield tuple(words[start : i + 1])


def context_counts(paragraphs: list[str]) -> dict[tuple[str, ...], Counter]:
    """For every context that some capitalised name follows: how often each completion follows it."""
    split = [paragraph.split() for paragraph in paragraphs]
    candidates = set()
    for words in split:
        for i in range(len(words) - 1):
            if words[i + 1][:1].isupper() and NAME.match(completion_word(words[i + 1])):
                candidates.update(contexts_before(words, i))
    counts: dict[tuple[str, ...], Counter] = defaultdict(Counter)
    for words in split:
        for i in range(len(words) - 1):
            for context in contexts_before(words, i):
                if context in candidates:
                    counts[context][completion_word(words[i + 1])] += 1
    return counts


def cloze_items(counts: dict[tuple[str, ...], Counter], min_count: int, min_share: float) -> list[dict]:
    """The shortest contexts whose majority completion is a name with share >= min_share of >= min_count."""
    determined = {}
    for context, completions in counts.items():
        total = sum(completions.values())
        answer, hits = completions.most_common(1)[0]
        if total >= min_count and hits / total >= min_share and NAME.match(answer) and answer not in TITLES:
            determined[context] = (answer, total, hits / total)
    items = []
    for context, (answer, total, share) in determined.items():
        if any(context[k:] in determined for k in range(1, len(context) - MIN_CONTEXT + 1)):
            continue  # a shorter context already determines it
        if answer.lower() in {completion_word(w).lower() for w in context}:
            continue  # the answer is in the prompt: copying, not recall
        if " ".join(context).isupper():
            continue  # a heading in capitals ("SACRED TO THE" -> "MEMORY"), not a relation
        items.append({"prompt": " ".join(context), "answers": [answer], "count": total, "share": round(share, 3)})
    return items


def diverse(items: list[dict], max_per_answer: int) -> list[dict]:
    """At most `max_per_answer` items per answer, the most frequent contexts first."""
    kept, per_answer = [], Counter()
    for item in sorted(items, key=lambda it: (-it["count"], it["prompt"])):
        answer = item["answers"][0]
        if per_answer[answer] < max_per_answer:
            per_answer[answer] += 1
            kept.append(item)
    return kept


def source_of_paragraphs(cache_dir: Path) -> dict[str, str]:
    """dedupe_key -> source name for every paragraph of the prose sources (read from the cached packages)."""
    from training.corpus import PROSE_SOURCES, dedupe_key, fetch_deb, unpack_deb

    sources = {}
    for name, (package, read) in PROSE_SOURCES.items():
        if name == "wordnet_examples":
            continue
        deb = fetch_deb(package, cache_dir / "downloads")
        for text in read(unpack_deb(deb, cache_dir / "unpacked")):
            sources.setdefault(dedupe_key(text), name)
    return sources


def item_sources(items: list[dict], paragraphs: list[str], source_by_key: dict[str, str]) -> None:
    """Name the source of each item: the book where its prompt + answer occurs most (in place)."""
    from training.corpus import dedupe_key

    by_book = [(source_by_key.get(dedupe_key(p), "unknown"), p) for p in paragraphs]
    for item in items:
        phrase = f"{item['prompt']} {item['answers'][0]}"
        found = Counter(book for book, p in by_book if phrase in p)
        item["source"] = found.most_common(1)[0][0] if found else "unknown"


def sentence_beginning(paragraph: str) -> str | None:
    """A paragraph's words up to its first comma, without the comma, when they are 4..9 plain words
    (no quotes, no sentence end); None otherwise. The paragraph continues right after it (", ...")."""
    words = []
    for word in paragraph.split():
        if not PLAIN_WORD.match(word):
            break
        words.append(word)
        if word.endswith(","):
            break
    if 4 <= len(words) <= 9 and words[-1].endswith(","):
        return " ".join(words).rstrip(",")
    return None


def generation_prompts(paragraphs: list[str], count: int) -> list[str]:
    """Sentence beginnings for the speed/quality sweep (`sentence_beginning`), taken evenly across the
    given paragraphs."""
    prompts = [p for p in map(sentence_beginning, paragraphs) if p is not None]
    if len(prompts) < count:
        raise ValueError(f"only {len(prompts)} candidate prompts in the held-out splits; asked for {count}")
    stride = len(prompts) / count
    return [prompts[int(i * stride)] for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-count", type=int, default=3, help="a context must occur at least this often")
    parser.add_argument("--min-share", type=float, default=0.7, help="the answer's share of its completions")
    parser.add_argument("--max-per-answer", type=int, default=3, help="items that may share one answer")
    parser.add_argument("--prompts", type=int, default=32, help="generation prompts to write")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)

    from training.corpus import build_prose_corpus

    corpus = build_prose_corpus()
    train = (corpus / "train.txt").read_text(encoding="utf-8").splitlines()
    items = diverse(cloze_items(context_counts(train), args.min_count, args.min_share), args.max_per_answer)
    item_sources(items, train, source_of_paragraphs(corpus.parent))
    order = {"austen": 0, "moby_dick": 1, "world_english_bible": 2}
    items.sort(key=lambda it: (order.get(it["source"], 3), -it["count"], it["prompt"]))
    held_out = []
    for split in ("validation", "test"):
        held_out += (corpus / f"{split}.txt").read_text(encoding="utf-8").splitlines()
    prompts = generation_prompts(held_out, args.prompts)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    qa_path, prompts_path = args.out_dir / "qa.jsonl", args.out_dir / "prompts.txt"
    fields = ("prompt", "answers", "count", "share", "source")
    qa_path.write_text("".join(json.dumps({k: it[k] for k in fields}) + "\n" for it in items), encoding="utf-8")
    prompts_path.write_text("".join(p + "\n" for p in prompts), encoding="utf-8")
    by_source = Counter(it["source"] for it in items)
    print(f"{len(items)} Q&A items ({dict(by_source)}) -> {qa_path}")
    print(f"{len(prompts)} generation prompts -> {prompts_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
