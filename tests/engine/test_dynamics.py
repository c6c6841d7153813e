"""Forgetting events and cartography: known answers on hand-made traces, and the engine's
online accumulation equal to the statistics of the per-epoch trace it saw."""

from __future__ import annotations

import numpy as np
import torch
from conftest import train, train_regime

from memlab.data.datasets import balanced_subsets
from memlab.engine import dynamics
from memlab.engine.models import StackedMLP
from memlab.engine.train import init_seeds


def _accumulate(correct: np.ndarray, p: np.ndarray, index: np.ndarray, n_pool: int) -> dict:
    """Feed a trace [epochs, rows, m] of one stack (row k = replica k) into the accumulators
    (``p``: the probability of the given label; the engine passes its loss ``-log p``)."""
    acc = dynamics.start(correct.shape[1], n_pool)
    rows = torch.arange(correct.shape[1])
    for c, q in zip(correct, p, strict=True):
        loss = -torch.log(torch.tensor(q, dtype=torch.float32))
        dynamics.update(acc, rows, torch.from_numpy(index), torch.from_numpy(c), loss)
    return dynamics.finish(acc)


def test_forgetting_counts_on_a_hand_made_history():
    # One replica, four examples over six evaluations (1 = correct):
    trace = np.array(
        [
            [0, 1, 1, 1, 1, 0],  # learned at evaluation 2, forgotten at 6: 1 event
            [1, 0, 1, 0, 1, 0],  # forgotten three times
            [0, 0, 0, 0, 0, 0],  # never learned: one per evaluation, 6 (Toneva et al.'s code)
            [1, 1, 1, 1, 1, 1],  # unforgettable: 0
        ],
        bool,
    ).T[:, None, :]  # [epochs, 1 row, 4 examples]
    p = np.full(trace.shape, 0.5)
    got = _accumulate(trace, p, np.arange(4)[None], 4)
    np.testing.assert_array_equal(dynamics.forgetting_events(got)[0], [1, 3, 6, 0])
    np.testing.assert_allclose(dynamics.correctness(got)[0], [4 / 6, 3 / 6, 0, 1])
    np.testing.assert_array_equal(got["dyn_learned"][0], [True, True, False, True])


def test_cartography_on_a_hand_made_probability_trace():
    p = np.array([[0.1, 0.9], [0.3, 0.9], [0.8, 0.9], [0.6, 0.9]])[:, None, :]  # [4 epochs, 1, 2]
    got = _accumulate(p > 0.5, p, np.arange(2)[None], 2)
    np.testing.assert_allclose(got["dyn_confidence"][0], [0.45, 0.9], rtol=1e-6)
    # Population standard deviation, as the cartography code's np.std.
    np.testing.assert_allclose(
        got["dyn_variability"][0], [np.std([0.1, 0.3, 0.8, 0.6]), 0.0], atol=1e-7
    )
    np.testing.assert_allclose(dynamics.correctness(got)[0], [0.5, 1.0])


def test_cumulative_and_final_loss_on_a_hand_made_loss_trace():
    # CSL is the sum of the recorded per-epoch losses; the final loss is the last one.
    p = np.array([[0.2, 0.9], [0.5, 0.6], [0.7, 0.95]])[:, None, :]  # [3 epochs, 1, 2]
    got = _accumulate(p > 0.5, p, np.arange(2)[None], 3)
    losses = -np.log(p.astype(np.float32)).astype(np.float64)[:, 0, :]
    np.testing.assert_allclose(dynamics.cumulative_loss(got)[0, :2], losses.sum(0), rtol=1e-6)
    np.testing.assert_allclose(got["dyn_final_loss"][0, :2], losses[-1], rtol=1e-6)
    assert np.isnan(dynamics.cumulative_loss(got)[0, 2]) and np.isnan(got["dyn_final_loss"][0, 2])


def test_learning_time_is_the_start_of_the_last_run_of_correct_evaluations():
    trace = np.array(
        [
            [1, 1, 1, 1, 1],  # correct from the first evaluation: 0
            [0, 0, 1, 1, 1],  # learned for good at evaluation 2
            [1, 0, 1, 0, 1],  # learned, forgotten, relearned: the last run starts at 4
            [0, 0, 0, 0, 0],  # never learned: NEVER
            [1, 1, 1, 1, 0],  # forgotten at the end: never learned for good
        ],
        bool,
    ).T[:, None, :]
    got = _accumulate(trace, np.where(trace, 0.9, 0.1), np.arange(5)[None], 6)
    never = dynamics.NEVER
    np.testing.assert_array_equal(got["dyn_learning_time"][0], [0, 2, 4, never, never, never])
    # As an estimator "never" ranks after every learning time: one past the last evaluation.
    np.testing.assert_array_equal(dynamics.learning_time(got)[0, :5], [0, 2, 4, 5, 5])
    assert np.isnan(dynamics.learning_time(got)[0, 5])


def test_examples_a_replica_did_not_train_on_stay_undefined():
    # Two replicas over a pool of 5, each training on its own 2 examples.
    index = np.array([[0, 3], [1, 3]])
    correct = np.ones((3, 2, 2), bool)
    got = _accumulate(correct, np.full(correct.shape, 0.7), index, 5)
    np.testing.assert_array_equal(got["dyn_epochs"], [[3, 0, 0, 3, 0], [0, 3, 0, 3, 0]])
    events = dynamics.forgetting_events(got)
    assert np.isnan(events[0, [1, 2, 4]]).all() and (events[0, [0, 3]] == 0).all()
    assert np.isnan(got["dyn_confidence"][1, 0]) and got["dyn_confidence"][1, 1] == np.float32(0.7)


def test_engine_accumulates_the_trace_it_evaluated(digits_split, monkeypatch):
    """The statistics the engine returns equal those of the per-epoch trace recomputed from the
    evaluations it made (a spy records them), replicas leaving the stack included."""
    seen = []
    original = dynamics.update

    def spy(acc, replica, index, correct, loss):
        seen.append((replica.clone(), index.clone(), correct.clone(), loss.clone()))
        original(acc, replica, index, correct, loss)

    monkeypatch.setattr(dynamics, "update", spy)
    r, n = 3, len(digits_split.y_pool)
    mask = balanced_subsets(n, 60, r, seed=0)
    seeds = init_seeds(0, range(r))
    model = StackedMLP(64, 10, width=16, depth=2, dropout=0.0, replica_seeds=seeds)
    res = train(model, digits_split, mask, train_regime(max_epochs=40, lr=1e-2, batch_size=16))
    assert len(set(res.stop_epoch.tolist())) > 1  # replicas left the stack at different epochs
    traces = {i: {} for i in range(r)}  # replica -> example -> [(correct, p)]
    for replica, index, correct, p in seen:
        for k, rep in enumerate(replica.tolist()):
            for j, c, q in zip(index[k].tolist(), correct[k].tolist(), p[k].tolist(), strict=True):
                traces[rep].setdefault(j, []).append((c, q))
    d = res.dynamics
    for rep in range(r):
        assert sorted(traces[rep]) == np.flatnonzero(mask[rep]).tolist()
        assert (d["dyn_epochs"][rep][~mask[rep]] == 0).all()
        for j, seq in traces[rep].items():
            c = np.array([s[0] for s in seq])
            loss = np.array([s[1] for s in seq], np.float32)
            q = np.exp(-loss)
            assert d["dyn_epochs"][rep, j] == len(seq) == res.stop_epoch[rep]
            assert d["dyn_forgotten"][rep, j] == int((c[:-1] & ~c[1:]).sum())
            assert d["dyn_correct"][rep, j] == c.sum()
            np.testing.assert_allclose(d["dyn_confidence"][rep, j], q.mean(), rtol=1e-5)
            np.testing.assert_allclose(d["dyn_variability"][rep, j], q.std(), atol=1e-6)
            np.testing.assert_allclose(d["dyn_loss_sum"][rep, j], loss.sum(dtype=np.float64))
            assert d["dyn_final_loss"][rep, j] == loss[-1]
            wrong = np.flatnonzero(~c)
            expected = 0 if not len(wrong) else wrong[-1] + 1
            if expected == len(c):
                expected = dynamics.NEVER
            assert d["dyn_learning_time"][rep, j] == expected
