"""The stacked GRU language model: its math, its independence between replicas, its loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import train_regime

from memlab.data.text import BOS, PAD
from memlab.engine.resume import Resume
from memlab.engine.sequence import StackedGRU, token_outputs, train_sequences
from memlab.engine.train import carve_validation, init_seeds, loss_drop
from memlab.plan.study import STILL_IMPROVING, STOP_REASONS

torch.set_num_threads(1)

V, E, H, T = 30, 6, 8, 8


def _model(replicas=(0, 1, 2), dropout=0.0, hidden=H, embedding=E, seed=0):
    seeds = init_seeds(seed, list(replicas))
    return StackedGRU(len(seeds), V, embedding, hidden, dropout=dropout, replica_seeds=seeds)


def _corpus(n=24, seed=0):
    """``n`` documents of 2..T-1 words after BOS, PAD to T."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((n, T), np.int64)
    tokens[:, 0] = BOS
    for i, length in enumerate(rng.integers(2, T, n)):
        tokens[i, 1 : 1 + length] = rng.integers(3, V, length)
    return tokens


def _masks(n=24, r=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((r, n), bool)
    for row in mask:
        row[rng.choice(n, size, replace=False)] = True
    return mask


def _regime(**kw):
    return train_regime(
        **{"batch_size": 4, "lr": 0.01, "max_epochs": 4, "log_every": 1, "stop_at_fit": False} | kw
    )


def _train(model, tokens, mask, regime, **kw):
    return train_sequences(
        model, tokens, mask, kw.pop("val", None), _corpus(6, seed=9), regime, seed=0,
        log=kw.pop("log", lambda _: None), **kw,
    )  # fmt: skip


def _same(a, b):
    """Every output of two results byte for byte (but the seconds)."""
    for name, p in a.model.named_parameters():
        assert torch.equal(p, dict(b.model.named_parameters())[name]), name
    assert a.history.keys() == b.history.keys()
    for col in a.history:
        np.testing.assert_array_equal(a.history[col], b.history[col], err_msg=col)
    for f in ("stop_epoch", "stop_reason", "fit_epoch", "loss_drop"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_stack_equals_replicas_built_one_by_one():
    stack = _model((0, 1, 2))
    tokens = torch.from_numpy(_corpus(5)[:, :-1])
    logits = stack(tokens.expand(3, -1, -1))
    for i, r in enumerate((0, 1, 2)):
        alone = _model((r,))
        for (name, p), q in zip(stack.named_parameters(), alone.parameters(), strict=True):
            assert torch.equal(p[i : i + 1], q), name
        assert torch.equal(alone(tokens.unsqueeze(0))[0], logits[i])
    # The replicas differ: the test would not notice one seed serving all.
    assert not torch.equal(logits[0], logits[1])


def test_gru_matches_torch_nn_gru():
    model = _model((4,))
    gru = torch.nn.GRU(E, H, batch_first=True)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(model.w_ih[0].T)
        gru.weight_hh_l0.copy_(model.w_hh[0].T)
        gru.bias_ih_l0.copy_(model.b_ih[0, 0])
        gru.bias_hh_l0.copy_(model.b_hh[0, 0])
    tokens = torch.from_numpy(_corpus(5)[:, :-1])
    out, _ = gru(F.embedding(tokens, model.embedding[0]))
    expected = out @ model.w_out[0] + model.b_out[0]
    torch.testing.assert_close(model(tokens.unsqueeze(0))[0], expected, atol=1e-5, rtol=1e-5)


def test_training_is_deterministic():
    tokens, mask = _corpus(), _masks()
    regime = _regime(dropout=0.2)
    _same(
        _train(_model(dropout=0.2), tokens, mask, regime),
        _train(_model(dropout=0.2), tokens, mask, regime),
    )


def test_replica_in_a_stack_equals_it_alone():
    """Exactly, bit for bit: every op is per replica (one GEMM per replica, the loss's gradient
    reaches each replica as its own mean's), each replica's blocks are aligned alike alone and
    stacked (sequence.ALIGN), and AdamW's kernel gets one slice per replica (ReplicaAdamW);
    without the last two a replica differed by 1 ulp after a few steps."""
    tokens, mask = _corpus(), _masks()
    regime = _regime()
    stack = _train(_model(), tokens, mask, regime)
    alone = _train(_model((1,)), tokens, mask[1:2], regime, replicas=[1])
    for p, q in zip(stack.model.parameters(), alone.model.parameters(), strict=True):
        assert torch.equal(p[1:2], q)
    rows = stack.history["replica"] == 1
    for col in alone.history:
        np.testing.assert_array_equal(stack.history[col][rows], alone.history[col], err_msg=col)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    tokens, mask = _corpus(), _masks()
    regime = _regime(max_epochs=6, dropout=0.1)
    resume = Resume(tmp_path / "state.pt", every=2)

    def killed_at_4(line):
        if line.startswith("epoch    4"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(_model(dropout=0.1), tokens, mask, regime, resume=resume, log=killed_at_4)
    lines = []
    resumed = _train(_model(dropout=0.1), tokens, mask, regime, resume=resume, log=lines.append)
    assert any(line.startswith("resuming") and "after epoch 2" in line for line in lines)
    _same(resumed, _train(_model(dropout=0.1), tokens, mask, regime))


def test_pad_targets_are_ignored():
    tokens, mask = _corpus(), _masks()
    regime = _regime(max_epochs=2)
    wider = np.pad(tokens, ((0, 0), (0, 3)), constant_values=PAD)
    a = _train(_model(), tokens, mask, regime)
    b = _train(_model(), wider, mask, regime)
    for col in ("train_loss", "train_accuracy", "heldout_loss"):
        np.testing.assert_allclose(a.history[col], b.history[col], rtol=1e-6, err_msg=col)
    # The history's last train loss is the mean over real targets of the returned weights'.
    loss, _ = token_outputs(a.model, tokens)
    pad = tokens[:, 1:] == PAD
    last = a.history["epoch"] == 2
    for r in range(3):
        own = mask[r]
        mean = loss[r, own].sum() / (~pad[own]).sum()
        np.testing.assert_allclose(a.history["train_loss"][last][r], mean, rtol=1e-5)
    # A model that predicts PAD everywhere: PAD targets still count neither as loss nor as hits
    # (one document per call: the packed rows then hold PAD targets too).
    with torch.no_grad():
        a.model.b_out[..., PAD] += 100
    loss, correct = token_outputs(a.model, tokens, chunk=1)
    assert (loss[:, pad] == 0).all() and not correct[:, pad].any()
    assert (loss[:, ~pad] > 50).all()
    # Nor in the history: training barely moves such a model, and its accuracy stays 0.
    biased = _model()
    with torch.no_grad():
        biased.b_out[..., PAD] += 100
    res = _train(biased, tokens, mask, _regime(max_epochs=1, lr=1e-6))
    assert (res.history["train_accuracy"] == 0).all()
    assert (res.history["heldout_accuracy"] == 0).all()


def test_loss_falls_and_a_tiny_corpus_is_memorized():
    # Four documents of 11 words: only the word after BOS is a guess (one right in four).
    docs = np.zeros((4, 12), np.int64)
    docs[:, 0] = BOS
    docs[:, 1:] = np.random.default_rng(0).integers(3, V, (4, 11))
    tokens = np.tile(docs, (4, 1))  # each document 4 times
    mask = np.ones((2, len(tokens)), bool)
    model = _model((0, 1), hidden=32, embedding=16)
    res = _train(model, tokens, mask, _regime(max_epochs=60, lr=0.03, batch_size=8))
    loss = res.history["train_loss"].reshape(-1, 2)
    assert (loss[-1] < 0.5 * loss[0]).all()
    assert (res.history["train_accuracy"][-2:] > 0.9).all()
    _, correct = token_outputs(res.model, docs)
    assert correct[:, :, 1:].all()


def test_early_stopping_restores_best_weights():
    tokens = _corpus(40)
    mask = _masks(40, size=16)
    train_mask, val_mask = carve_validation(mask, 0.25, seed=0)
    regime = _regime(max_epochs=30, lr=0.05, early_stopping=True, patience=3, val_fraction=0.25)
    res = _train(_model(), tokens, train_mask, regime, val=val_mask)
    assert (np.array(STOP_REASONS)[res.stop_reason] == "early_stopping").any()
    loss, _ = token_outputs(res.model, tokens)
    real = tokens[:, 1:] != PAD
    for r in range(3):
        val_docs = val_mask[r]
        at_end = loss[r, val_docs].sum() / real[val_docs].sum()
        history = res.history["val_loss"][res.history["replica"] == r]
        assert abs(at_end - history.min()) < 1e-6
        assert res.stop_epoch[r] == len(history)


def test_converged_replicas_stop_with_fit():
    tokens, mask = _corpus(), _masks()
    regime = _regime(max_epochs=200, stop_at_fit=True, lr=0.03)
    res = _train(_model(), tokens, mask, regime, converge_window=3)
    fit = STOP_REASONS.index("fit")
    assert (res.stop_reason == fit).all() and (res.stop_epoch < 200).all()
    np.testing.assert_array_equal(res.fit_epoch, res.stop_epoch)
    assert (loss_drop(res.history, [0, 1, 2], window=3) <= STILL_IMPROVING).all()
    assert (res.history["epoch"].max() == res.stop_epoch.max()) and len(res.loss_drop) == 3


def test_unequal_subsets_raise():
    mask = _masks()
    mask[0, np.flatnonzero(~mask[0])[0]] = True
    with pytest.raises(ValueError):
        _train(_model(), _corpus(), mask, _regime())


def test_token_outputs_match_cross_entropy():
    model = _model()
    with torch.no_grad():
        model.w_out.mul_(5)  # larger logits than at init: losses far from log(V)
    tokens = _corpus(5)
    loss, correct = token_outputs(model, tokens, chunk=2)
    t = torch.from_numpy(tokens)
    for r in range(3):
        logits = model(t[:, :-1].unsqueeze(0).expand(3, -1, -1))[r]
        for d in range(5):
            n = int((t[d, 1:] != PAD).sum())
            expected = F.cross_entropy(logits[d, :n], t[d, 1 : 1 + n], reduction="none")
            torch.testing.assert_close(torch.from_numpy(loss[r, d, :n]), expected)
            np.testing.assert_array_equal(
                correct[r, d, :n], (logits[d, :n].argmax(-1) == t[d, 1 : 1 + n]).numpy()
            )
