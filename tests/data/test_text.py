"""The synthetic text corpus (memlab.data.text): Zipf word frequencies, power-law fact counts,
canaries by repetition, held-out text never trained on, typo rates, word tokens in windows, a
user's text file, and byte-identical corpora from one seed."""

from __future__ import annotations

import pickle
import re
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from scipy import stats

from memlab.data.canaries import CanarySpec
from memlab.data.text import (
    FUNCTION_WORDS,
    PAD,
    TYPO_RATES,
    UNK,
    WORD_CLASSES,
    TextSpec,
    Tokenizer,
    add_typos,
    generate_corpus,
    read_documents,
    slot_shares,
    typo_edits,
    zipf_probabilities,
)
from memlab.io import MemlabInputError

SMALL = TextSpec(
    vocab_size=300,
    documents=300,
    held_out=100,
    facts=64,
    entities=32,
    canaries=CanarySpec(4, (0, 1, 4, 16), 4096),
)


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(SMALL, seed=5)


def _sentences(documents):
    """Every sentence of ``documents`` (grammar and fact sentences end with ``.``)."""
    return {s.strip() + " ." for d in documents for s in d.split(" .") if s.strip()}


# --- Zipf ----------------------------------------------------------------------------------


def test_configured_zipf_probabilities_are_the_power_law():
    p = zipf_probabilities(1000, 1.3)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] / p[1] == pytest.approx(2**1.3)
    assert p[9] / p[99] == pytest.approx(10**1.3)


def test_grammar_word_frequencies_follow_the_configured_zipf_law():
    s = 1.3
    spec = TextSpec(vocab_size=2000, zipf_exponent=s, documents=20000, held_out=0, facts=0)
    c = generate_corpus(spec, seed=1)
    vocab = c.vocabulary
    rank = {w: r for r, w in enumerate(vocab.words)}
    grammar = [d for d, k in zip(c.documents, c.kind, strict=True) if k == "grammar"]
    counts = np.bincount(
        [rank[w] for d in grammar for w in d.split() if w in rank], minlength=len(rank)
    )
    n = counts.sum()
    # Classes carry their share of the template slots, so the marginal is Zipf.
    masses = np.bincount(vocab.word_class, weights=vocab.probability, minlength=3)
    np.testing.assert_allclose(masses, slot_shares(), atol=1e-3)
    # Rank 1 / rank 2 ≈ 2^s (sampling error of the ratio of ~40,000 and ~16,000 counts: ~1%).
    assert counts[0] / counts[1] == pytest.approx(2**s, rel=0.05)
    # Log-log slope over the ranks with large counts ≈ -s.
    ranks = np.arange(1, 101)
    slope = np.polyfit(np.log(ranks), np.log(counts[:100]), 1, w=np.sqrt(counts[:100]))[0]
    assert slope == pytest.approx(-s, abs=0.05)
    # Within each class the counts are multinomial with the Zipf law restricted to the class:
    # a chi-square test on the top words (plus the rest in one bin) does not reject it.
    for k in range(len(WORD_CLASSES)):
        index, p = vocab.class_words(k)
        obs, exp = counts[index], p * counts[index].sum()
        top = exp >= 20
        obs_bins = np.append(obs[top], obs[~top].sum())
        exp_bins = np.append(exp[top], exp[~top].sum())
        assert stats.chisquare(obs_bins, exp_bins).pvalue > 1e-3
        # ...and does reject a law off by 0.1 in the exponent (the test has power).
        q = vocab.probability[index] ** ((s - 0.1) / s)
        wrong = np.append((q / q.sum() * obs.sum())[top], (q / q.sum() * obs.sum())[~top].sum())
        assert stats.chisquare(obs_bins, wrong).pvalue < 1e-6
    assert n > 100_000


# --- facts ---------------------------------------------------------------------------------


def test_fact_repetitions_follow_the_power_law():
    spec = TextSpec(vocab_size=50, documents=0, held_out=0, facts=4000, entities=1000)
    k = generate_corpus(spec, seed=2).facts.repetitions
    p = zipf_probabilities(spec.fact_max_repetitions, spec.fact_exponent)  # p(k) ∝ k^-2
    assert p[0] == pytest.approx(1 / sum(j**-2.0 for j in range(1, 17)))  # ≈ 0.63
    share_once = np.mean(k == 1)
    assert abs(share_once - p[0]) < 4 * np.sqrt(p[0] * (1 - p[0]) / len(k))
    assert k.min() >= 1 and k.max() <= 16
    # All of the law: chi-square over k = 1, 2, 3, 4, 5+.
    obs = np.bincount(np.minimum(k, 5), minlength=6)[1:]
    exp = np.append(p[:4], p[4:].sum()) * len(k)
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_a_fact_repeated_k_times_appears_exactly_k_times(corpus):
    seen = Counter(corpus.documents)
    facts = corpus.facts
    for i, k in enumerate(facts.repetitions):
        assert seen[facts.sentence(i)] == k
        rows = np.flatnonzero(corpus.fact == i)
        assert len(rows) == k
        assert set(corpus.kind[rows]) == {"fact"}
        assert (corpus.repetitions[rows] == k).all()
        # A fact's copies are consecutive: one group that a subset holds or not.
        assert rows[-1] - rows[0] == k - 1
    # Greedy recall's prompt is the sentence up to its value.
    assert facts.sentence(0) == f"{facts.prompt(0)} {facts.value[0]} ."
    assert re.fullmatch(r"the \w+ of \w+ is", facts.prompt(0))


def test_fact_pairs_are_distinct_and_values_come_from_their_relation(corpus):
    f = corpus.facts
    assert len(set(zip(f.entity, f.relation, strict=True))) == len(f.entity) == SMALL.facts
    by_relation: dict[str, set[str]] = {}
    for r, v in zip(f.relation, f.value, strict=True):
        by_relation.setdefault(r, set()).add(v)
    pools = list(by_relation.values())
    assert all(len(v) <= SMALL.values for v in pools)
    assert all(not a & b for i, a in enumerate(pools) for b in pools[i + 1 :])


# --- canaries ------------------------------------------------------------------------------


def test_canaries_appear_exactly_their_repetitions(corpus):
    seen = Counter(corpus.documents)
    reps = corpus.canary_repetitions
    np.testing.assert_array_equal(reps, np.repeat([0, 1, 4, 16], 4))
    for i, (text, r) in enumerate(zip(corpus.canaries, reps, strict=True)):
        assert seen[text] == r
        assert (corpus.canary == i).sum() == r
        assert re.fullmatch(r"the code of [a-z]+ is( \d){5}", text)
    # Controls (r = 0) and references are never in training, nor are their secrets.
    trained_secrets = {
        d[-9:] for d, k in zip(corpus.documents, corpus.kind, strict=True) if k == "canary"
    }
    untrained = [t for t, r in zip(corpus.canaries, reps, strict=True) if r == 0]
    untrained += list(corpus.references)
    assert not any(seen[t] for t in untrained)
    assert not {t[-9:] for t in untrained} & trained_secrets
    # 4096 references, all distinct and none a canary.
    assert len(set(corpus.references)) == len(corpus.references) == 4096
    assert not set(corpus.references) & set(corpus.canaries)
    assert all(re.fullmatch(r"the code of [a-z]+ is( \d){5}", t) for t in corpus.references)


def test_canary_secrets_are_uniform_digits(corpus):
    digits = np.array([[int(c) for c in t.split()[-5:]] for t in corpus.references])
    counts = np.bincount(digits.ravel(), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3


# --- held-out text -------------------------------------------------------------------------


def test_held_out_text_is_never_trained_on(corpus):
    training, sentences = set(corpus.documents), _sentences(corpus.documents)
    assert len(corpus.paraphrases) == SMALL.facts
    for i, p in enumerate(corpus.paraphrases):
        assert p not in training and p not in sentences
        # The paraphrase states the same fact: entity first, value last.
        assert p.startswith(corpus.facts.entity[i] + " ")
        assert p.endswith(f" {corpus.facts.value[i]} .")
    assert len(corpus.held_out) == SMALL.held_out
    assert not set(corpus.held_out) & training
    assert all(d.startswith("the ") and d.endswith(" .") for d in corpus.held_out)


def test_every_word_of_the_corpus_is_a_token(corpus):
    text = list(corpus.documents) + list(corpus.held_out) + list(corpus.paraphrases)
    text += list(corpus.references) + list(corpus.canaries)
    words = {w for d in text for w in d.split()}
    assert words <= set(corpus.tokenizer.words)
    assert set(FUNCTION_WORDS) <= set(corpus.tokenizer.words)
    assert not set(FUNCTION_WORDS) & set(corpus.vocabulary.words)
    assert all(re.fullmatch(r"([bdfgklmnprstvz][aeiou]){2,3}", w) for w in corpus.vocabulary.words)


# --- typos ---------------------------------------------------------------------------------


def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    d = np.zeros((len(a) + 1, len(b) + 1), np.int64)
    d[:, 0], d[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(
                d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1])
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i, j] = min(d[i, j], d[i - 2, j - 2] + 1)
    return int(d[-1, -1])


def test_typo_rate_matches_each_severity(corpus):
    words = list(corpus.vocabulary.words) * 8
    n_chars = sum(map(len, words))  # about 12,000
    measured = []
    for severity, rate in enumerate(TYPO_RATES, start=1):
        rng = np.random.default_rng(severity)
        edited = [typo_edits(w, rate, rng) for w in words]
        edits = sum(e for _, e in edited)
        # Edited characters are Binomial(characters, rate).
        assert abs(edits / n_chars - rate) < 4 * np.sqrt(rate * (1 - rate) / n_chars)
        # The edits are real: the words' edit distance adds up to them, less where two
        # neighbouring edits merge (an insertion then a deletion is one substitution), which
        # takes two edited neighbours: a share of about the rate at most.
        distance = sum(_osa(w, t) for w, (t, _) in zip(words, edited, strict=True))
        assert (1 - rate) * edits <= distance <= edits
        measured.append(distance / n_chars)
    assert all(a < b for a, b in pairwise(measured))


def test_add_typos_by_severity(corpus):
    docs = list(corpus.held_out)
    assert add_typos(docs, 0, seed=3) == docs
    changed = []
    for severity in range(1, 6):
        typo = add_typos(docs, severity, seed=3)
        assert typo == add_typos(docs, severity, seed=3)  # seeded
        assert typo != add_typos(docs, severity, seed=4)
        changed.append(np.mean([a != b for a, b in zip(docs, typo, strict=True)]))
    assert all(a < b for a, b in pairwise(changed))
    # Document i's typos do not depend on the other documents.
    assert add_typos(docs[5:6], 3, seed=3) != add_typos(docs[4:5], 3, seed=3)
    with pytest.raises(MemlabInputError, match="severity"):
        add_typos(docs, 6, seed=3)


# --- tokens --------------------------------------------------------------------------------


def test_encoding_round_trips_and_windows_map_back(corpus):
    tok, docs, context = corpus.tokenizer, list(corpus.documents), 8
    w = tok.encode(docs, context)
    assert w.tokens.shape == (len(w.document), context) and w.tokens.dtype == np.int64
    assert tok.decode_documents(w) == docs
    lengths = np.array([len(d.split()) for d in docs])
    # A document of n tokens is ceil(n / context) consecutive windows, the last one padded.
    np.testing.assert_array_equal(np.bincount(w.document), -(-lengths // context))
    for j in range(len(w.document)):
        ids = tok.ids(docs[w.document[j]])
        k, a = w.length[j], w.start[j]
        np.testing.assert_array_equal(w.tokens[j, :k], ids[a : a + k])
        assert (w.tokens[j, k:] == PAD).all()
        assert a % context == 0 and (k == context or a + k == len(ids))
    assert UNK not in w.tokens and (w.tokens[w.tokens != PAD] > UNK).all()


def test_encode_splits_long_documents_and_marks_unknown_words():
    tok = Tokenizer.from_documents(["a b c a", "b"])
    assert tok.words == ("<pad>", "<unk>", "<s>", "a", "b", "c")
    w = tok.encode(["a b c a b", "c zz"], context=2)
    np.testing.assert_array_equal(w.tokens, [[3, 4], [5, 3], [4, 0], [5, UNK]])
    np.testing.assert_array_equal(w.document, [0, 0, 0, 1])
    np.testing.assert_array_equal(w.start, [0, 2, 4, 0])
    np.testing.assert_array_equal(w.length, [2, 2, 1, 2])
    assert tok.decode(w.tokens[3]) == "c <unk>"
    with pytest.raises(MemlabInputError, match="document 1 has no words"):
        tok.encode(["a", " "], context=2)


# --- a user's file -------------------------------------------------------------------------


def test_read_documents(tmp_path):
    good = tmp_path / "corpus.txt"
    good.write_bytes("the  cat sat .\r\nle café\n".encode())
    assert read_documents(good) == ["the cat sat .", "le café"]
    no_final_newline = tmp_path / "b.txt"
    no_final_newline.write_text("one\ntwo")
    assert read_documents(no_final_newline) == ["one", "two"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"one\ntwo\n\nfour\n", r"bad\.txt, line 3: empty line"),
        (b"one\ntwo\n   \t\nfour", r"bad\.txt, line 3: empty line"),
        (b"ok line\nab\xffcd\n", r"bad\.txt, line 2: .*byte 2 of the line \(byte 10 of the file\)"),
        (b"", r"bad\.txt: the file is empty"),
        (b"\n\n", r"bad\.txt: the file is empty"),
    ],
)
def test_read_documents_refuses_bad_files(tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    with pytest.raises(MemlabInputError, match=message):
        read_documents(bad)


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_same_corpus_byte_for_byte(corpus):
    again = generate_corpus(SMALL, seed=5)
    assert pickle.dumps(again) == pickle.dumps(corpus)
    other = generate_corpus(SMALL, seed=6)
    assert other.documents != corpus.documents
    assert other.vocabulary.words != corpus.vocabulary.words
    assert other.references != corpus.references


def test_bad_spec_is_refused():
    with pytest.raises(MemlabInputError, match="facts must be at most entities x relations"):
        TextSpec(facts=100, entities=10)
    with pytest.raises(MemlabInputError, match="sentences"):
        TextSpec(sentences=(3, 1))
    with pytest.raises(MemlabInputError, match="references must be >= 4096"):
        TextSpec(canaries=CanarySpec(4, (0, 1), 100))
