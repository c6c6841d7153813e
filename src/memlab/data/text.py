"""A synthetic text corpus for memorization studies: rare words, facts and canaries, offline.

Everything is a pure function of a :class:`TextSpec` and one seed (streams named with
:func:`memlab.seeds.derive_seed`), so the same arguments give the same corpus byte for byte.

- **Vocabulary.** ``vocab_size`` unique lowercase words of 2-3 consonant-vowel syllables
  (``mekato``), in a seeded random order that is their rank.
  Unigram probabilities follow Zipf's law, ``p(r) ∝ r^-s`` for rank ``r`` (Zipf 1935/1949;
  ``s = zipf_exponent``), so most words are rare.
- **Grammar.** Every word has a class (noun, verb, adjective). A sentence is one of
  ``GRAMMAR_TEMPLATES`` drawn uniformly, e.g. ``the <noun> <verb> the <adj> <noun> .``; each slot
  draws a word of its class with probability ``p(w) / P(class)``, i.e. Zipf restricted to the
  class. Classes are assigned by rank, greedily, to the class whose probability mass is furthest
  below its share of template slots (nouns 4/9, verbs 3/9, adjectives 2/9): then a word's
  frequency across all slots is its Zipf probability (up to the last word's mass and sampling
  noise), and within a class it is exactly Zipf. A document is ``sentences`` sentences.
- **Facts** (Allen-Zhu & Li, *Physics of Language Models 3.3*, ICLR 2025: stored knowledge is
  about 2 bits per parameter and rare facts are the first lost). ``facts`` distinct pairs
  (entity, relation), each with a value drawn uniformly from the relation's ``values`` names,
  rendered ``the capital of zorbafi is mekato .``. A fact appears ``k`` times, ``k`` drawn from
  ``p(k) ∝ k^-a`` on ``1..fact_max_repetitions`` (``a = fact_exponent``): most facts appear
  once. Each appearance is its own training document; a fact's ``k`` documents share its id.
  Its paraphrase (the relation's second template, e.g. ``zorbafi has its capital at mekato .``)
  is held out: recall of a value from a form never trained on.
- **Canaries** (Carlini et al., *The Secret Sharer*, USENIX Security 2019):
  ``the code of <name> is d d d d d`` (5 digits, one token each), ``per_repetition`` canaries
  for each repetition count of ``canaries.repetitions`` (0: controls, never trained on), plus
  ``canaries.references`` reference canaries from the same distribution that are never inserted
  (exposure ranks a canary among them). Names come from a pool of ``canary_names`` words shared
  by canaries and references; the 5-digit secrets are distinct across all of them, so no
  reference or control equals a trained canary.
- **Held-out set**: ``held_out`` grammar documents, none equal to a training document, and the
  facts' paraphrases. Counterfactual memorization (Zhang et al., *Counterfactual Memorization in
  Neural Language Models*, NeurIPS 2023) is then measured on training documents by subsets.
- **Typos** (:func:`add_typos`): every non-space character is edited with probability
  ``TYPO_RATES[severity - 1]`` = 2, 5, 10, 15, 25 %: a swap with the next character of its word
  (when the two differ and the next is not edited itself), a deletion, or the insertion of a
  random letter after it, each a third of the time (deletion or insertion, half each, where no
  swap is possible). Edits never overlap, so the edit distance is the number of edits, less
  where two neighbours merge (an insertion then a deletion is one substitution). Severity 0 is
  the text unchanged.

Training documents are laid out grammar documents first, then each fact's ``k`` copies, then
each canary's ``r`` copies (like image canaries, memlab.data.canaries), so a fact or canary is a
group of documents that a subset holds or not as a whole.

**Tokens are words** (:class:`Tokenizer`): text is split on whitespace; rare words stay rare
tokens, and a fact's value or a canary's digit is one token, so recall and exposure are one
prediction per token. Id 0 is padding, id 1 an unknown word (a typo'd word is usually one), id 2
the start of a document (a model's first input, so that a document's first word is predicted too).
:meth:`Tokenizer.encode` cuts a document longer than the context into consecutive,
non-overlapping windows of ``context`` tokens, the last one padded, and returns each window's
document and offset, so subsets can be drawn by document.

A user's own corpus is a UTF-8 text file, one document per line (:func:`read_documents`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memlab.data.canaries import MIN_REFERENCES, CanarySpec
from memlab.io import MemlabInputError
from memlab.seeds import derive_seed

PAD, UNK, BOS = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>")
WORD_CLASSES = ("noun", "verb", "adj")
GRAMMAR_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("the", "<noun>", "<verb>", "the", "<adj>", "<noun>", "."),
    ("the", "<adj>", "<noun>", "<verb>", "."),
    ("the", "<noun>", "<verb>", "."),
)
# Relation -> (training template, held-out paraphrase); {e} the entity, {v} the value. The
# training form is always "the <relation> of {e} is {v} .", so its prompt ends with "is".
RELATIONS: dict[str, tuple[str, str]] = {
    "capital": ("the capital of {e} is {v} .", "{e} has its capital at {v} ."),
    "color": ("the color of {e} is {v} .", "{e} is painted {v} ."),
    "friend": ("the friend of {e} is {v} .", "{e} is a friend of {v} ."),
    "home": ("the home of {e} is {v} .", "{e} lives in {v} ."),
}
CANARY_TEMPLATE = "the code of {name} is {digits}"
CANARY_DIGITS = 5
DIGITS = tuple(str(d) for d in range(10))
# Per-character edit rate at severities 1..5 (module doc).
TYPO_RATES: tuple[float, ...] = (0.02, 0.05, 0.10, 0.15, 0.25)
KINDS = ("grammar", "fact", "canary")

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _function_words() -> tuple[str, ...]:
    """Every fixed word of the templates, in first-seen order."""
    texts = [" ".join(t) for t in GRAMMAR_TEMPLATES] + [t for p in RELATIONS.values() for t in p]
    texts.append(CANARY_TEMPLATE)
    words = [w for t in texts for w in t.split() if not w.startswith(("<", "{"))]
    return tuple(dict.fromkeys(words + list(DIGITS)))


FUNCTION_WORDS = _function_words()


@dataclass(frozen=True)
class TextSpec:
    """The generator's parameters (module doc); defaults make a corpus of a few thousand
    documents in well under a second."""

    vocab_size: int = 2000
    zipf_exponent: float = 1.0
    documents: int = 2000  # training grammar documents
    held_out: int = 500  # held-out grammar documents
    sentences: tuple[int, int] = (1, 3)  # sentences per grammar document, min and max
    facts: int = 512
    entities: int = 256
    values: int = 32  # value names per relation: recall by chance is 1 / values
    fact_exponent: float = 2.0
    fact_max_repetitions: int = 16
    canaries: CanarySpec = field(default_factory=lambda: CanarySpec(16, (0, 1, 4, 16), 4096))
    canary_names: int = 64

    def __post_init__(self) -> None:
        lo, hi = self.sentences
        secrets = self.canaries.references + len(self.canaries.canary_repetitions)
        checks = [
            (self.vocab_size >= 3, "vocab_size must be >= 3 (one word per class)"),
            (min(self.documents, self.held_out, self.facts) >= 0, "counts must be >= 0"),
            (1 <= lo <= hi, "sentences must be (min, max) with 1 <= min <= max"),
            (
                self.facts <= self.entities * len(RELATIONS),
                "facts must be at most entities x relations",
            ),
            (
                min(self.values, self.canary_names, self.fact_max_repetitions) >= 1,
                "values, canary_names and fact_max_repetitions must be >= 1",
            ),
            (min(self.zipf_exponent, self.fact_exponent) >= 0, "exponents must be >= 0"),
            (
                self.canaries.references >= MIN_REFERENCES,
                f"canaries.references must be >= {MIN_REFERENCES} (exposure's resolution)",
            ),
            (
                secrets <= 10**CANARY_DIGITS,
                "canaries and references must number at most 10^5 (distinct 5-digit secrets)",
            ),
        ]
        bad = [what for ok, what in checks if not ok]
        if bad:
            raise MemlabInputError(f"text corpus: {'; '.join(bad)} (got {self}).")

    def names_needed(self) -> int:
        """Generated words beyond the vocabulary: entities, values, canary names."""
        return self.entities + self.values * len(RELATIONS) + self.canary_names


# --- words ---------------------------------------------------------------------------------


def generate_words(n: int, seed: int, exclude: Iterable[str] = FUNCTION_WORDS) -> list[str]:
    """``n`` unique lowercase words of 2-3 consonant-vowel syllables, in a seeded random order."""
    rng = np.random.default_rng(derive_seed(seed, "words"))
    syllables = np.array([c + v for c in _CONSONANTS for v in _VOWELS])
    capacity = len(syllables) ** 2 + len(syllables) ** 3
    if n > capacity // 2:  # rejection sampling slows down long before the pool runs out
        raise MemlabInputError(f"text corpus: {n} words asked, at most {capacity // 2} possible.")
    taken: set[str] = set(exclude)
    words: list[str] = []
    while len(words) < n:
        batch = 2 * (n - len(words)) + 16
        sizes = rng.integers(2, 4, batch)
        parts = syllables[rng.integers(0, len(syllables), (batch, 3))]
        for size, row in zip(sizes, parts, strict=True):
            word = "".join(row[:size])
            if word not in taken:
                taken.add(word)
                words.append(word)
    return words[:n]


def zipf_probabilities(n: int, exponent: float) -> np.ndarray:
    """float64 [n]: ``p(r) ∝ r^-exponent`` for ranks 1..n."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -float(exponent)
    return weights / weights.sum()


def slot_shares() -> np.ndarray:
    """float64 [classes]: each word class's share of the template slots (templates uniform)."""
    slots = Counter(w[1:-1] for t in GRAMMAR_TEMPLATES for w in t if w.startswith("<"))
    counts = np.array([slots[c] for c in WORD_CLASSES], np.float64)
    return counts / counts.sum()


def assign_classes(probability: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """int64 [n]: by rank, each word to the class furthest below its share of the mass (so a
    word's frequency over all slots is its own probability: module doc)."""
    mass = np.zeros(len(shares))
    out = np.empty(len(probability), np.int64)
    for i, p in enumerate(probability):
        c = int(np.argmax(shares - mass))
        out[i], mass[c] = c, mass[c] + p
    return out


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The grammar's content words, by Zipf rank (rank 1 first)."""

    words: tuple[str, ...]
    word_class: np.ndarray  # int64 [V]: index into WORD_CLASSES
    probability: np.ndarray  # float64 [V]: the configured Zipf law
    exponent: float

    @classmethod
    def generate(cls, words: Sequence[str], exponent: float) -> Vocabulary:
        probability = zipf_probabilities(len(words), exponent)
        return cls(tuple(words), assign_classes(probability, slot_shares()), probability, exponent)

    def class_words(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Class ``c``'s word indices and their Zipf probabilities restricted to the class."""
        index = np.flatnonzero(self.word_class == c)
        p = self.probability[index]
        return index, p / p.sum()


# --- documents -----------------------------------------------------------------------------


def grammar_documents(
    vocab: Vocabulary, n: int, sentences: tuple[int, int], rng: np.random.Generator
) -> list[str]:
    """``n`` documents of ``sentences`` (min, max) sentences from ``GRAMMAR_TEMPLATES``."""
    counts = rng.integers(sentences[0], sentences[1] + 1, n)
    templates = rng.integers(0, len(GRAMMAR_TEMPLATES), int(counts.sum()))
    slots = [w for t in templates for w in GRAMMAR_TEMPLATES[t]]
    # Draw each class's slots at once (vectorized), then fill them in order.
    fills: dict[str, Iterator[int]] = {}
    for c, name in enumerate(WORD_CLASSES):
        index, p = vocab.class_words(c)
        need = sum(w == f"<{name}>" for w in slots)
        fills[f"<{name}>"] = iter(rng.choice(index, size=need, p=p).tolist())
    words = [vocab.words[next(fills[w])] if w in fills else w for w in slots]
    sentence_length = np.array([len(t) for t in GRAMMAR_TEMPLATES])[templates]
    doc = np.repeat(np.arange(n), counts)
    length = np.bincount(doc, sentence_length, minlength=n).astype(np.int64)
    ends = np.cumsum(length)
    starts = ends - length
    return [" ".join(words[a:b]) for a, b in zip(starts, ends, strict=True)]


def power_law_counts(n: int, exponent: float, k_max: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [n]: counts ``k`` in 1..k_max drawn with ``p(k) ∝ k^-exponent``."""
    return rng.choice(np.arange(1, k_max + 1), size=n, p=zipf_probabilities(k_max, exponent))


@dataclass(frozen=True, eq=False)
class Facts:
    """The knowledge base: fact ``i`` is (entity[i], relation[i], value[i]), seen k[i] times."""

    entity: tuple[str, ...]
    relation: tuple[str, ...]
    value: tuple[str, ...]
    repetitions: np.ndarray  # int64 [n_facts]

    def sentence(self, i: int) -> str:
        return RELATIONS[self.relation[i]][0].format(e=self.entity[i], v=self.value[i])

    def paraphrase(self, i: int) -> str:
        return RELATIONS[self.relation[i]][1].format(e=self.entity[i], v=self.value[i])

    def prompt(self, i: int) -> str:
        """The sentence up to its value (``the capital of zorbafi is``): greedy recall's input."""
        return self.sentence(i).rsplit(" ", 2)[0]


def make_facts(spec: TextSpec, entities: Sequence[str], values: Sequence[str], seed: int) -> Facts:
    """``spec.facts`` distinct (entity, relation) pairs, a value each, power-law repetitions."""
    rng = np.random.default_rng(derive_seed(seed, "facts"))
    relations = list(RELATIONS)
    pairs = rng.choice(len(entities) * len(relations), size=spec.facts, replace=False)
    entity, relation = np.divmod(pairs, len(relations))
    value = rng.integers(0, spec.values, spec.facts)
    return Facts(
        entity=tuple(entities[e] for e in entity),
        relation=tuple(relations[r] for r in relation),
        value=tuple(values[r * spec.values + v] for r, v in zip(relation, value, strict=True)),
        repetitions=power_law_counts(
            spec.facts, spec.fact_exponent, spec.fact_max_repetitions, rng
        ).astype(np.int64),
    )


def canary_texts(
    spec: CanarySpec, names: Sequence[str], seed: int
) -> tuple[list[str], np.ndarray, list[str]]:
    """The canaries (level by level, controls first), their repetitions and the references.

    Secrets are drawn without replacement, so every canary and reference differs from all others
    in its digits (and so as a whole)."""
    rng = np.random.default_rng(derive_seed(seed, "text_canaries"))
    reps = spec.canary_repetitions
    total = len(reps) + spec.references
    secrets = rng.choice(10**CANARY_DIGITS, size=total, replace=False)
    who = rng.integers(0, len(names), total)
    texts = [
        CANARY_TEMPLATE.format(name=names[w], digits=" ".join(f"{s:0{CANARY_DIGITS}d}"))
        for w, s in zip(who, secrets, strict=True)
    ]
    return texts[: len(reps)], reps, texts[len(reps) :]


# --- the corpus ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Corpus:
    """A generated corpus (module doc). Per training document ``i``: ``documents[i]``,
    ``kind[i]`` (``grammar``, ``fact``, ``canary``), ``fact[i]`` and ``canary[i]`` (ids, -1 if
    none) and ``repetitions[i]`` (its fact's or canary's copies in training; 1 for grammar)."""

    documents: tuple[str, ...]
    kind: np.ndarray  # <U7 [n]
    fact: np.ndarray  # int64 [n]
    canary: np.ndarray  # int64 [n]
    repetitions: np.ndarray  # int64 [n]
    facts: Facts
    paraphrases: tuple[str, ...]  # [n_facts]: fact i's held-out paraphrase
    canaries: tuple[str, ...]  # [m]: every canary, controls included
    canary_repetitions: np.ndarray  # int64 [m]
    references: tuple[str, ...]  # never inserted, same distribution as the canaries
    held_out: tuple[str, ...]  # grammar documents, none in training
    vocabulary: Vocabulary
    tokenizer: Tokenizer
    # Per relation (RELATIONS' order), the names its values are drawn from (uniformly): recall's
    # candidates, so a model that never saw a fact picks its value with probability 1 / values.
    value_names: tuple[tuple[str, ...], ...] = ()

    @property
    def word_frequencies(self) -> np.ndarray:
        """float64 [V]: the configured Zipf probabilities of ``vocabulary.words``."""
        return self.vocabulary.probability


def _held_out(
    vocab: Vocabulary, n: int, sentences: tuple[int, int], seen: set[str], seed: int
) -> list[str]:
    """``n`` grammar documents, none equal to a training document (short ones can collide)."""
    rng = np.random.default_rng(derive_seed(seed, "held_out"))
    out: list[str] = []
    for _ in range(100):
        if len(out) >= n:
            break
        fresh = grammar_documents(vocab, 2 * (n - len(out)) + 8, sentences, rng)
        out += [d for d in fresh if d not in seen][: n - len(out)]
    if len(out) < n:
        raise MemlabInputError(
            f"text corpus: could not draw {n} held-out documents unlike the training ones; "
            "use more words, longer documents or fewer held-out documents."
        )
    return out


def generate_corpus(spec: TextSpec, seed: int) -> Corpus:
    """The corpus of ``spec`` from ``seed`` (module doc): byte-identical for the same arguments."""
    words = generate_words(spec.vocab_size + spec.names_needed(), seed)
    vocab = Vocabulary.generate(words[: spec.vocab_size], spec.zipf_exponent)
    names = words[spec.vocab_size :]
    entities = names[: spec.entities]
    values = names[spec.entities : spec.entities + spec.values * len(RELATIONS)]
    canary_names = names[spec.entities + spec.values * len(RELATIONS) :]

    rng = np.random.default_rng(derive_seed(seed, "grammar"))
    grammar = grammar_documents(vocab, spec.documents, spec.sentences, rng)
    facts = make_facts(spec, entities, values, seed)
    canaries, canary_reps, references = canary_texts(spec.canaries, canary_names, seed)

    fact_ids = np.repeat(np.arange(spec.facts), facts.repetitions)
    canary_ids = np.repeat(np.arange(len(canaries)), canary_reps)
    documents = (
        grammar + [facts.sentence(i) for i in fact_ids.tolist()] + [canaries[i] for i in canary_ids]
    )
    n_g, n_f, n_c = len(grammar), len(fact_ids), len(canary_ids)
    none = np.full(n_g, -1, np.int64)
    return Corpus(
        documents=tuple(documents),
        kind=np.repeat(np.array(KINDS), [n_g, n_f, n_c]),
        fact=np.concatenate([none, fact_ids, np.full(n_c, -1, np.int64)]),
        canary=np.concatenate([none, np.full(n_f, -1, np.int64), canary_ids]),
        repetitions=np.concatenate(
            [np.ones(n_g, np.int64), facts.repetitions[fact_ids], canary_reps[canary_ids]]
        ),
        facts=facts,
        paraphrases=tuple(facts.paraphrase(i) for i in range(spec.facts)),
        canaries=tuple(canaries),
        canary_repetitions=canary_reps,
        references=tuple(references),
        held_out=tuple(_held_out(vocab, spec.held_out, spec.sentences, set(grammar), seed)),
        vocabulary=vocab,
        value_names=tuple(
            tuple(values[r * spec.values : (r + 1) * spec.values]) for r in range(len(RELATIONS))
        ),
        tokenizer=Tokenizer(tuple(SPECIAL_TOKENS) + FUNCTION_WORDS + tuple(words)),
    )


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Windows:
    """Documents cut into fixed-length windows: row ``j`` is tokens ``start[j]`` to
    ``start[j] + length[j]`` of document ``document[j]``, padded with ``PAD``."""

    tokens: np.ndarray  # int64 [n_windows, context]
    document: np.ndarray  # int64 [n_windows]
    start: np.ndarray  # int64 [n_windows]
    length: np.ndarray  # int64 [n_windows]: tokens that are not padding


@dataclass(frozen=True, eq=False)
class Tokenizer:
    """Word tokens: ``words[i]`` has id ``i``; ids 0, 1 and 2 are ``<pad>``, ``<unk>`` and
    ``<s>``."""

    words: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.words[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"a tokenizer's first words must be {SPECIAL_TOKENS}")
        index = {w: i for i, w in enumerate(self.words)}
        if len(index) != len(self.words):
            raise ValueError("a tokenizer's words must be unique")
        object.__setattr__(self, "index", index)

    @classmethod
    def from_documents(cls, documents: Iterable[str]) -> Tokenizer:
        """Every word of ``documents``, most frequent first (ties alphabetically)."""
        counts = Counter(w for d in documents for w in d.split())
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        return cls(SPECIAL_TOKENS + tuple(w for w in ranked if w not in SPECIAL_TOKENS))

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, text: str) -> np.ndarray:
        """int64 ids of ``text``'s whitespace-separated words (unknown ones ``UNK``)."""
        return np.array([self.index.get(w, UNK) for w in text.split()], np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        """The words of ``ids``, padding dropped."""
        return " ".join(self.words[i] for i in ids if i != PAD)

    def encode(self, documents: Sequence[str], context: int) -> Windows:
        """Every document in windows of ``context`` tokens (module doc); an empty one raises."""
        if context < 1:
            raise MemlabInputError(f"the context must be at least 1 token, not {context}.")
        rows, doc, start, length = [], [], [], []
        for i, text in enumerate(documents):
            ids = self.ids(text)
            if not len(ids):
                raise MemlabInputError(f"document {i} has no words; every document needs one.")
            for a in range(0, len(ids), context):
                piece = ids[a : a + context]
                rows.append(np.pad(piece, (0, context - len(piece)), constant_values=PAD))
                doc.append(i)
                start.append(a)
                length.append(len(piece))
        return Windows(
            tokens=np.array(rows, np.int64).reshape(-1, context),
            document=np.array(doc, np.int64),
            start=np.array(start, np.int64),
            length=np.array(length, np.int64),
        )

    def decode_documents(self, windows: Windows) -> list[str]:
        """The documents of ``windows`` again, their windows joined in order of offset."""
        n = int(windows.document.max()) + 1 if len(windows.document) else 0
        parts: list[list[tuple[int, str]]] = [[] for _ in range(n)]
        for row, d, a, k in zip(
            windows.tokens, windows.document, windows.start, windows.length, strict=True
        ):
            parts[d].append((int(a), self.decode(row[:k])))
        return [" ".join(text for _, text in sorted(p)) for p in parts]


# --- typos ---------------------------------------------------------------------------------


def typo_edits(text: str, rate: float, rng: np.random.Generator) -> tuple[str, int]:
    """``text`` with each non-space character edited with probability ``rate`` (module doc),
    and the number of edits (``Binomial(characters, rate)``).

    Which characters are edited is drawn first, so the rate is exact; a swap takes the next
    character only when that one is not edited itself (edits never overlap)."""
    edits, out_words = 0, []
    for word in text.split():
        edited = rng.random(len(word)) < rate
        edits += int(edited.sum())
        chars, i = [], 0
        while i < len(word):
            c = word[i]
            if not edited[i]:
                chars.append(c)
                i += 1
                continue
            can_swap = i + 1 < len(word) and word[i + 1] != c and not edited[i + 1]
            op = rng.integers(0, 3 if can_swap else 2)
            if op == 0:  # deletion
                i += 1
            elif op == 1:  # insertion of a random letter after c
                chars += [c, _LETTERS[rng.integers(0, 26)]]
                i += 1
            else:  # swap with the next character
                chars += [word[i + 1], c]
                i += 2
        if chars:
            out_words.append("".join(chars))
    return " ".join(out_words), edits


def add_typos(documents: Sequence[str], severity: int, seed: int) -> list[str]:
    """``documents`` with typos at ``severity`` 0..5 (rates ``TYPO_RATES``; 0: unchanged).

    Document ``i``'s edits come from its own stream, so they do not depend on the others."""
    if severity not in range(len(TYPO_RATES) + 1):
        raise MemlabInputError(f"typo severity {severity!r}; it must be 0..{len(TYPO_RATES)}.")
    if severity == 0:
        return list(documents)
    rate = TYPO_RATES[severity - 1]
    return [
        typo_edits(d, rate, np.random.default_rng(derive_seed(seed, "typos", severity, i)))[0]
        for i, d in enumerate(documents)
    ]


# --- a user's file -------------------------------------------------------------------------


def read_documents(path: str | Path) -> list[str]:
    """The documents of a UTF-8 text file, one per line, whitespace runs collapsed to one space.

    A final newline is optional and ``\\r\\n`` endings are accepted. An empty file, an empty (or
    all-blank) line and bytes that are not UTF-8 each raise MemlabInputError naming the file and
    the line (and the byte offset, in the line and in the file, of bad bytes)."""
    path = Path(path)
    data = path.read_bytes()
    if not data.strip():
        raise MemlabInputError(f"{path}: the file is empty; it needs one document per line.")
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    documents, offset = [], 0
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MemlabInputError(
                f"{path}, line {number}: bytes that are not UTF-8 at byte {err.start} of the line "
                f"(byte {offset + err.start} of the file): {raw[err.start : err.end]!r}; save the "
                "file as UTF-8."
            ) from None
        words = text.split()
        if not words:
            raise MemlabInputError(
                f"{path}, line {number}: empty line; every line must be a document (remove it)."
            )
        documents.append(" ".join(words))
        offset += len(raw) + 1
    return documents
