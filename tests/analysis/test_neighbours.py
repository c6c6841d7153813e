"""Label agreement of the pool's neighbourhoods and the correlation table of the per-example
measures: cases with answers counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import run_columns

from memlab.analysis import metrics as analysis
from memlab.analysis.neighbours import PoolAgreement, label_agreement, nearest_others
from memlab.data.datasets import Split, balanced_subsets, save_split
from memlab.io import MemlabInputError

# Two clusters on a line, the third point of the first cluster labelled like the second:
#   x:      0  1  2  10 11 12
#   label:  0  0  1   1  1  1
LINE = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0])[:, None]
LABELS = np.array([0, 0, 1, 1, 1, 1])


def test_agreement_on_a_hand_made_neighbourhood():
    # k=2. Example 0: neighbours 1 (label 0) and 2 (label 1): 1/2. Example 1: 0 and 2 at
    # distance 1: 1/2. Example 2 (label 1): 1 and 0, both label 0: 0. Examples 3-5: the other two
    # of their cluster, label 1: 1.
    np.testing.assert_allclose(label_agreement(LINE, LABELS, 2), [0.5, 0.5, 0, 1, 1, 1])
    # k=1, ties at distance 1 go to the lower index: example 1 takes 0 (label 0, agrees), not
    # 2; example 4 takes 3.
    np.testing.assert_allclose(label_agreement(LINE, LABELS, 1), [1, 1, 0, 1, 1, 1])
    swapped = LABELS.copy()
    swapped[[0, 2]] = swapped[[2, 0]]  # now 1 disagrees with its lower-index neighbour
    assert label_agreement(LINE, swapped, 1)[1] == 0.0
    # k = n_pool - 1: every other example. Example 0 (label 0) has one of five with label 0.
    np.testing.assert_allclose(label_agreement(LINE, LABELS, 5), [1, 1, 3, 3, 3, 3] / np.r_[5.0])


def test_agreement_reads_features_as_stored_whatever_their_shape():
    images = np.zeros((6, 2, 2), np.float32)
    images[:, 0, 0] = LINE[:, 0]  # the line in one pixel of 2x2 images
    np.testing.assert_allclose(label_agreement(images, LABELS, 2), [0.5, 0.5, 0, 1, 1, 1])


def test_neighbours_are_the_k_nearest_others_ties_to_the_lowest_index():
    """Against a direct count: distances sorted stably (ties by index) on features with many
    exact ties (small integers, duplicated rows), over several chunks of rows."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 3, (300, 3)), np.repeat(rng.integers(0, 9, (20, 3)), 5, 0)])
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).astype(float)
    np.fill_diagonal(d, np.inf)
    import memlab.analysis.neighbours as nb

    for k in (1, 4, 10):
        expected = np.zeros(d.shape, bool)
        np.put_along_axis(expected, np.argsort(d, axis=1, kind="stable")[:, :k], True, 1)
        original = nb._WORKING_MEMORY_MB
        nb._WORKING_MEMORY_MB = 1  # several chunks of rows
        try:
            chunks = list(nearest_others(x, k))
        finally:
            nb._WORKING_MEMORY_MB = original
        assert len(chunks) > 1
        chosen = np.concatenate([c for _, c in chunks])
        np.testing.assert_array_equal(chosen, expected)


def test_agreement_k_beyond_the_pool_names_the_key():
    with pytest.raises(MemlabInputError, match=r"analysis\.agreement_k = 6.*6 examples.*at most 5"):
        label_agreement(LINE, LABELS, 6)
    with pytest.raises(MemlabInputError, match=r"analysis\.agreement_k must be an integer >= 1"):
        label_agreement(LINE, LABELS, 0)


def test_pool_agreement_reads_the_split_once_per_labels(tmp_path):
    path = tmp_path / "line" / "split.npz"
    path.parent.mkdir()
    x = LINE.astype(np.float32)
    save_split(path, Split(x, LABELS, x[:2], LABELS[:2], 2, None))
    agreement = PoolAgreement.from_split_paths([str(path)], 2)
    run = {"dataset": "line"}
    first = agreement(run, LABELS)
    assert agreement(run, LABELS.astype(np.int16)) is first  # cached: same labels
    np.testing.assert_allclose(first, [0.5, 0.5, 0, 1, 1, 1])
    np.testing.assert_allclose(agreement(run, np.zeros(6, int)), 1.0)  # other labels
    with pytest.raises(MemlabInputError, match="no split file for dataset 'other'"):
        agreement({"dataset": "other"}, LABELS)


def _knn_bank(n=6, replicas=4):
    members = balanced_subsets(n, n // 2, replicas, seed=0)
    return {
        "train_mask": members,
        "pool_correct": members.copy(),
        "flipped": np.zeros(n, bool),
        "pool_label": LABELS[:n],
        "pool_pred": np.zeros((replicas, n), int),
    }


def test_memorization_table_has_the_agreement_column():
    run = run_columns(kind="knn")
    scores, _ = analysis.memorization_tables([(run, _knn_bank())])
    assert list(scores.columns) == analysis.MEMORIZATION_COLUMNS
    assert scores["agreement"].isna().all()  # no features given

    seen = []

    def agreement(r, labels):
        seen.append((r["dataset"], labels.tolist()))
        return label_agreement(LINE, labels, 2)

    scores, _ = analysis.memorization_tables([(run, _knn_bank())], agreement)
    np.testing.assert_allclose(scores["agreement"], [0.5, 0.5, 0, 1, 1, 1])
    assert seen == [("d", LABELS.tolist())]


def _scores(model, regime, score, size=10, agreement=None):
    n = len(score)
    return pd.DataFrame(
        {
            "dataset": "d",
            "label_noise": 0.2,
            "size": size,
            "model": model,
            "regime": regime,
            "example": np.arange(n),
            "score": score,
            "agreement": np.nan if agreement is None else agreement,
        }
    )


def test_example_correlations_on_hand_made_scores():
    a = np.array([0.1, 0.5, 0.2, 0.9, 0.3, 0.0])
    agreement = 1 - a**2  # decreasing in a: rank correlation -1
    memorization = pd.concat(
        [
            _scores("mlp-w8", "memorize", a, agreement=agreement),
            _scores("knn-k1", "memory", np.exp(a), agreement=agreement),  # monotone: +1
            _scores("mlp-w8", "dropout", -a, agreement=agreement),  # reversed: -1
            # Another size: its own pool, not paired with the runs above; one example unscored.
            _scores("mlp-w8", "memorize", [0.1, 0.2, 0.3, 0.4], size=20, agreement=0.5),
            _scores("knn-k1", "memory", [1.0, np.nan, 2.0, 3.0], size=20, agreement=0.5),
        ],
        ignore_index=True,
    )
    table = analysis.example_correlations(memorization)
    assert list(table.columns) == analysis.EXAMPLE_CORRELATION_COLUMNS
    small = table[table["size"] == 10].set_index(["measure_a", "measure_b"])
    assert len(small) == 6  # 4 measures: 6 pairs
    expected = {
        ("agreement", "knn-k1/memory"): -1.0,
        ("agreement", "mlp-w8/dropout"): 1.0,
        ("agreement", "mlp-w8/memorize"): -1.0,
        ("knn-k1/memory", "mlp-w8/dropout"): -1.0,
        ("knn-k1/memory", "mlp-w8/memorize"): 1.0,
        ("mlp-w8/dropout", "mlp-w8/memorize"): -1.0,
    }
    for pair, rho in expected.items():
        assert small.loc[pair, "spearman"] == pytest.approx(rho), pair
        assert small.loc[pair, "p_value"] == pytest.approx(0.0, abs=1e-6)
    assert (small["n"] == 6).all()
    assert (small.reset_index()[["dataset", "label_noise"]] == ["d", 0.2]).all().all()
    large = table[table["size"] == 20].set_index(["measure_a", "measure_b"])
    # Three examples both scored, in the same order; agreement is constant.
    assert large.loc[("knn-k1/memory", "mlp-w8/memorize"), "spearman"] == pytest.approx(1.0)
    assert large.loc[("knn-k1/memory", "mlp-w8/memorize"), "n"] == 3
    constant = large.loc[("agreement", "mlp-w8/memorize")]
    assert np.isnan(constant["spearman"]) and np.isnan(constant["p_value"]) and constant["n"] == 4


def test_example_correlations_without_agreement_or_scores():
    memorization = pd.concat(
        [_scores("a", "r", [0.1, 0.2, 0.3]), _scores("b", "r", [0.3, 0.1, 0.2])],
        ignore_index=True,
    )
    table = analysis.example_correlations(memorization)
    assert table[["measure_a", "measure_b"]].values.tolist() == [["a/r", "b/r"]]
    assert table.loc[0, "spearman"] == pytest.approx(-0.5)
    empty = analysis.example_correlations(pd.DataFrame(columns=analysis.MEMORIZATION_COLUMNS))
    assert empty.empty and list(empty.columns) == analysis.EXAMPLE_CORRELATION_COLUMNS
