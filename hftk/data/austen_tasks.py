"""Three small labelled data sets made from the Austen novels that ship with hftk.

`hftk run pipeline-tiny` is a smoke test that must run from a fresh install, so its fine-tuning
stages cannot read data the package does not carry. These sets are cut, deterministically, from
the vendored corpus (`resources/austen.txt.gz`), in the column layouts hftk's tasks read:

- `austen-novels` (classification, `text`/`label`): which of the six novels a paragraph is from;
- `austen-cloze` (extractive QA, SQuAD v2 layout): a sentence of the paragraph with a person's name
  replaced by "who", answered by that name's first mention in the paragraph; one question in ten
  asks about a name that is not in the paragraph (no answer);
- `austen-names` (NER, `tokens`/`ner_tags`): sentences with person names tagged B-PER/I-PER. A name
  is a capitalised word seen after a title (Mr., Mrs., Miss, Lady, ...), with its title and any
  first names before it: rule-made (silver) labels, right for checking the plumbing.

Each has `train` and `test` splits (test paragraphs come from other chapters than train ones).
A recipe names one as `hftk-data:NAME/SPLIT.jsonl`; `hftk run` writes the file into its output
folder (`data/NAME/SPLIT.jsonl`) before the first stage, so nothing lands outside the run folder.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from collections import Counter
from pathlib import Path

from hftk.errors import HftkError

SCHEME = "hftk-data:"
SETS = ("austen-novels", "austen-cloze", "austen-names")
SPLITS = ("train", "test")
NOVELS = ("Emma", "Mansfield Park", "Northanger Abbey", "Persuasion", "Pride and Prejudice", "Sense and Sensibility")
TITLES = ("Mr.", "Mrs.", "Miss", "Lady", "Sir", "Lord", "Colonel", "Captain", "Admiral", "General", "Dr.", "Mr", "Mrs", "Dr", "Aunt", "Uncle", "Cousin")
PLACES_AND_RANKS = {"London", "Gretna", "Longtown", "St", "Misses", "Prince", "Viscountess", "King"}  # caught by the title rule
SEED = 0
ROWS = {"austen-novels": (100, 25), "austen-cloze": (600, 150), "austen-names": (600, 150)}  # per split: (train, test); novels: per novel
_WORD = re.compile(r"(?:Mrs|Mr|Dr|St)\.|[A-Za-z]+(?:'[a-z]+)?|-{2,}|[^\sA-Za-z]")
_SENTENCE = re.compile(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)(?<=[.!?])\s+(?=[\"'A-Z])")


def is_generated(path: str | None) -> bool:
    return bool(path) and str(path).startswith(SCHEME)


def parse(path: str) -> tuple[str, str]:
    """`hftk-data:austen-novels/train.jsonl` -> ("austen-novels", "train"), with a one-line error for anything else."""
    name, _, file = path.removeprefix(SCHEME).partition("/")
    split = file.removesuffix(".jsonl")
    if name not in SETS or split not in SPLITS:
        choices = ", ".join(f"{SCHEME}{n}/{s}.jsonl" for n in SETS for s in SPLITS)
        raise HftkError(f"unknown generated data set {path!r}: use one of {choices}")
    return name, split


def rows(path: str) -> list[dict]:
    """The rows of one generated split (made once per process, the same on every machine)."""
    name, split = parse(path)
    return _make(name)[split]


def write(path: str, folder: Path) -> Path:
    """Write one generated split as JSON Lines under `folder` (atomically; kept if already there)."""
    name, split = parse(path)
    target = Path(folder) / name / f"{split}.jsonl"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows(path)), encoding="utf-8")
    os.replace(staging, target)
    return target


def target_path(path: str, folder: Path) -> Path:
    """Where `write` puts a generated split under `folder`."""
    name, split = parse(path)
    return Path(folder) / name / f"{split}.jsonl"


@functools.lru_cache(maxsize=None)
def _make(name: str) -> dict[str, list[dict]]:
    chapters = _chapters()
    rng = random.Random(SEED)
    train, test = _split_chapters(chapters, rng)
    make = {"austen-novels": _novels, "austen-cloze": _cloze, "austen-names": _names}[name]
    sizes = ROWS[name]
    return {"train": make(train, sizes[0], random.Random(SEED + 1)), "test": make(test, sizes[1], random.Random(SEED + 2))}


@functools.lru_cache(maxsize=1)
def _chapters() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(novel, paragraphs) per chapter, from the vendored corpus; novels found by their title lines."""
    from hftk.data.corpus import default_corpus_path
    import gzip

    lines = gzip.open(default_corpus_path(), "rt", encoding="utf-8").read().splitlines()
    titles = {title.lower(): title for title in NOVELS}
    chapters, novel, current = [], None, []
    for line in lines:
        text = line.strip()
        if text.lower() in titles or re.match(r"(?i)^chapter\s+\w+\.?$", text):
            if novel and current:
                chapters.append((novel, tuple(current)))
            current = []
            novel = titles.get(text.lower(), novel)
        elif novel and len(text) > 80:
            current.append(text)
    if novel and current:
        chapters.append((novel, tuple(current)))
    found = {novel for novel, _ in chapters}
    if found != set(NOVELS):
        raise HftkError(f"the vendored Austen corpus lacks {sorted(set(NOVELS) - found)}: reinstall hftk")
    return tuple(chapters)


def _split_chapters(chapters, rng: random.Random) -> tuple[list, list]:
    """Every fifth chapter of each novel (at random) is test: no paragraph is in both splits."""
    train, test = [], []
    for novel in NOVELS:
        own = [chapter for chapter in chapters if chapter[0] == novel]
        rng.shuffle(own)
        cut = max(1, len(own) // 5)
        test += own[:cut]
        train += own[cut:]
    return train, test


def _paragraphs(chapters) -> list[tuple[str, str]]:
    return [(novel, paragraph) for novel, paragraphs in chapters for paragraph in paragraphs]


def _novels(chapters, per_novel: int, rng: random.Random) -> list[dict]:
    picked = []
    for novel in NOVELS:
        own = [p for n, p in _paragraphs(chapters) if n == novel and len(p) <= 1200]
        picked += [{"text": paragraph, "label": novel} for paragraph in rng.sample(own, min(per_novel, len(own)))]
    rng.shuffle(picked)
    return picked


@functools.lru_cache(maxsize=1)
def _name_words() -> frozenset[str]:
    """Words of people's names: capitalised words that follow a title somewhere in the corpus
    (surnames), and capitalised words right before one of those mid-sentence (Emma Woodhouse)."""
    text = "\n".join(p for _, paragraphs in _chapters() for p in paragraphs)
    after_title = re.compile(r"\b(?:%s)\s+([A-Z][a-z]+)" % "|".join(re.escape(t) for t in TITLES))
    surnames = set(after_title.findall(text))
    pairs = re.findall(r"(?<=[a-z,;] )([A-Z][a-z]+) ([A-Z][a-z]+)", text)
    names = surnames | {first for first, last in pairs if last in surnames}
    # Not a name if the corpus writes it in lower case as often ("Dear", "Brown"), or if it is a title.
    counts = Counter(re.findall(r"[A-Za-z]+", text))
    not_names = {t.rstrip(".") for t in TITLES} | PLACES_AND_RANKS
    return frozenset(w for w in names if counts[w] > counts[w.lower()] and w not in not_names)


def _name_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the person names in `text` (title + name words, or name words alone)."""
    names = _name_words()
    titles = {title.rstrip(".") for title in TITLES}
    spans: list[tuple[int, int]] = []
    tokens = list(re.finditer(r"[A-Z][a-z]+\.?", text))
    index = 0
    while index < len(tokens):
        word = tokens[index].group().rstrip(".")
        is_title = word in titles and index + 1 < len(tokens) and tokens[index + 1].group().rstrip(".") in names
        if word in names or is_title:
            start = end = index
            while end + 1 < len(tokens) and tokens[end + 1].start() == tokens[end].end() + 1 and tokens[end + 1].group().rstrip(".") in names:
                end += 1
            spans.append((tokens[start].start(), tokens[end].start() + len(tokens[end].group().rstrip("."))))
            index = end + 1
        else:
            index += 1
    return spans


def _cloze(chapters, count: int, rng: random.Random) -> list[dict]:
    candidates = []
    for novel, paragraph in _paragraphs(chapters):
        if len(paragraph) > 900:
            continue
        sentences = _SENTENCE.split(paragraph)
        for sentence in sentences[1:] if len(sentences) > 1 else []:
            spans = _name_spans(sentence)
            if spans:
                candidates.append((novel, paragraph, sentence, spans[0]))
    rng.shuffle(candidates)
    picked, others = candidates[:count], candidates[count:]
    out = []
    for index, (novel, paragraph, sentence, (start, end)) in enumerate(picked):
        name = sentence[start:end]
        question = sentence[:start] + "who" + sentence[end:]
        context, answers = paragraph, {"text": [name], "answer_start": [paragraph.index(name)]}
        if index % 10 == 9:  # unanswerable: the question asked of another paragraph that never names the person
            context = next((p for n, p, _, _ in others[index:] if n == novel and name not in p), None)
            if context is None:
                continue
            answers = {"text": [], "answer_start": []}
        out.append({"id": f"{novel.split()[0].lower()}-{index}", "title": novel, "context": context, "question": question, "answers": answers})
    return out


def _names(chapters, count: int, rng: random.Random) -> list[dict]:
    sentences = [s for _, p in _paragraphs(chapters) for s in _SENTENCE.split(p) if 30 <= len(s) <= 300]
    rng.shuffle(sentences)
    out, empty = [], 0
    for sentence in sentences:
        if len(out) >= count:
            break
        spans = _name_spans(sentence)
        if not spans:
            if empty >= count // 5:  # a fifth of the sentences name nobody: the model must learn O too
                continue
            empty += 1
        tokens, tags = [], []
        for match in _WORD.finditer(sentence):
            inside = next((span for span in spans if span[0] <= match.start() < span[1]), None)
            tokens.append(match.group())
            tags.append("O" if inside is None else ("B-PER" if match.start() == inside[0] else "I-PER"))
        out.append({"tokens": tokens, "ner_tags": tags})
    return out
