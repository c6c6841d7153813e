"""The stacked training engine: replicas stacked equal replicas trained alone, and more."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import checkpoint_of, train, train_regime

from memlab.columnar import to_frame
from memlab.data.datasets import balanced_subsets as small_members
from memlab.engine.memory_net import StackedMemoryNet
from memlab.engine.models import StackedCNN, StackedMLP
from memlab.engine.optim import StackedAdamW
from memlab.engine.resume import FORMAT, Resume
from memlab.engine.train import (
    LoopState,
    TrainData,
    Trainer,
    carve_validation,
    init_seeds,
)
from memlab.plan.kinds import MLP


def _mlp(replicas, width=16, dropout=0.0, seed=0):
    return StackedMLP(
        64, 10, width=width, depth=2, dropout=dropout, replica_seeds=init_seeds(seed, replicas)
    )


def _cnn(replicas, seed=0):
    return StackedCNN((8, 8), 10, width=3, dropout=0.0, replica_seeds=init_seeds(seed, replicas))


def _memnet(replicas, seed=0):
    return StackedMemoryNet(
        64,
        10,
        width=16,
        depth=2,
        dropout=0.0,
        replica_seeds=init_seeds(seed, replicas),
        mix=None,
        temperature=0.1,
    )


def _train(model, split, mask, settings, replicas=None, val=None):
    return train(model, split, mask, settings, val=val, replicas=replicas)


@pytest.mark.parametrize("make", [_mlp, _cnn, _memnet], ids=["mlp", "cnn", "memory_net"])
@pytest.mark.parametrize(
    "regime",
    [
        {},  # memorize: replicas stop at different epochs when they fit
        {"weight_decay": 0.05, "early_stopping": True, "patience": 3},
    ],
)
def test_stacked_equals_one_by_one(digits_split, make, regime):
    r = 3
    mask = small_members(len(digits_split.y_pool), 60, r, 0)
    settings = train_regime(max_epochs=60, lr=1e-2, batch_size=16, **regime)
    val = None
    if settings.early_stopping:
        mask, val = carve_validation(mask, 0.25, seed=0)
    stacked = _train(make(range(r)), digits_split, mask, settings, val=val)
    assert len(set(stacked.stop_epoch.tolist())) > 1 or settings.early_stopping
    for i in range(r):
        alone = _train(
            make([i]),
            digits_split,
            mask[i : i + 1],
            settings,
            replicas=[i],
            val=None if val is None else val[i : i + 1],
        )
        assert set(alone.history["replica"]) == {i}
        assert alone.stop_epoch[0] == stacked.stop_epoch[i]
        assert alone.fit_epoch[0] == stacked.fit_epoch[i]
        # A grouped convolution sums in another order than a single one: rounding differences
        # of 1e-7 grow over hundreds of steps, hence the looser CNN tolerance. A memory read's
        # softmax over similarities amplifies them too (at temperature 0.1: 2e-5 after 60
        # epochs, up to 2e-4 under load; at 0.03 a near-tie between two neighbours can flip).
        tol = 1e-3 if make in (_cnn, _memnet) else 1e-5
        for a, b in zip(stacked.model.parameters(), alone.model.parameters(), strict=True):
            torch.testing.assert_close(a[i], b[0], rtol=tol, atol=tol)


def test_memorize_fits_every_replica_and_freezes_it(digits_split):
    mask = small_members(len(digits_split.y_pool), 50, 4, 0)
    res = _train(
        _mlp(range(4), width=64), digits_split, mask, train_regime(max_epochs=300, lr=3e-3)
    )
    assert (res.fit_epoch > 0).all() and res.stop_reason == ["fit"] * 4
    assert (res.stop_epoch == res.fit_epoch).all()
    # History stops at each replica's own fit epoch.
    last = res.history.groupby("replica")["epoch"].max().to_numpy()
    assert (last == res.fit_epoch).all()
    final_acc = res.history.groupby("replica")["train_accuracy"].last().to_numpy()
    assert (final_acc == 1.0).all()


def test_early_stopping_keeps_best_validation_weights(digits_split):
    mask = small_members(len(digits_split.y_pool), 100, 2, 0)
    train, val = carve_validation(mask, 0.3, seed=0)
    assert not (train & val).any() and ((train | val) == mask).all()
    settings = train_regime(
        max_epochs=200, lr=1e-2, early_stopping=True, patience=5, stop_at_fit=False
    )
    res = _train(_mlp(range(2)), digits_split, train, settings, val=val)
    assert res.stop_reason == ["early_stopping"] * 2
    h = res.history
    for r in range(2):
        hr = h[h.replica == r]
        best_epoch = int(hr.loc[hr.val_loss.idxmin(), "epoch"])
        assert res.stop_epoch[r] == best_epoch + settings.patience
    # The returned weights are the best-validation weights: recompute their validation loss.
    xv = torch.from_numpy(digits_split.x_pool[val[0]])
    yv = torch.from_numpy(digits_split.y_pool[val[0]])
    with torch.no_grad():
        logits = res.model(xv)[0]
    loss = torch.nn.functional.cross_entropy(logits, yv).item()
    assert loss == pytest.approx(h[h.replica == 0].val_loss.min(), rel=1e-4)


@pytest.mark.parametrize("make", [_mlp, _memnet], ids=["mlp", "memory_net"])
def test_eval_every_thins_only_the_heldout_curve(digits_split, make):
    """eval_every leaves training, stopping, train metrics and dynamics as they were; the
    held-out curve keeps every eval_every-th epoch and each replica's last, equal to the full
    curve's there, NaN elsewhere."""
    mask = small_members(len(digits_split.y_pool), 50, 3, 0)
    base = dict(max_epochs=150, lr=1e-2)
    full = _train(make(range(3)), digits_split, mask, train_regime(**base))
    thin = _train(make(range(3)), digits_split, mask, train_regime(**base, eval_every=7))
    assert (thin.stop_epoch == full.stop_epoch).all() and len(set(full.stop_epoch)) > 1
    for name in full.dynamics:
        np.testing.assert_array_equal(thin.dynamics[name], full.dynamics[name])
    held = ["heldout_loss", "heldout_accuracy"]
    rest = [c for c in full.history.columns if c not in held]
    pd.testing.assert_frame_equal(thin.history[rest], full.history[rest])
    last = thin.history["epoch"].eq(thin.history["replica"].map(dict(enumerate(thin.stop_epoch))))
    due = thin.history["epoch"].mod(7).eq(0) | last
    assert due.sum() < len(due) / 3
    pd.testing.assert_frame_equal(thin.history.loc[due, held], full.history.loc[due, held])
    assert thin.history.loc[~due, held].isna().all().all()
    assert train_regime(eval_every=7).settings()["eval_every"] == 7
    assert "eval_every" not in train_regime().settings()


def test_dropout_does_not_couple_replicas(digits_split):
    """Replica 0's result does not depend on replica 1's data, even with dropout."""
    n = len(digits_split.y_pool)
    a = small_members(n, 80, 2, seed=1)
    b = a.copy()
    b[1] = small_members(n, 80, 2, seed=2)[1]
    settings = train_regime(max_epochs=5, dropout=0.5, stop_at_fit=False)
    ra = _train(_mlp(range(2), dropout=0.5), digits_split, a, settings)
    rb = _train(_mlp(range(2), dropout=0.5), digits_split, b, settings)
    wa, wb = next(ra.model.parameters()), next(rb.model.parameters())
    torch.testing.assert_close(wa[0], wb[0], rtol=0, atol=0)
    assert not torch.equal(wa[1], wb[1])


def test_same_seed_same_numbers_different_seed_different(digits_split):
    mask = small_members(len(digits_split.y_pool), 60, 2, 0)
    s = train_regime(max_epochs=5, stop_at_fit=False)
    h1 = _train(_mlp(range(2)), digits_split, mask, s).history
    h2 = _train(_mlp(range(2)), digits_split, mask, s).history
    assert h1.equals(h2)
    h3 = _train(_mlp(range(2), seed=1), digits_split, mask, s).history
    assert not h1.equals(h3)


@pytest.mark.parametrize(
    ("betas", "eps"), [((0.9, 0.999), 1e-8), ((0.5, 0.9), 1e-6), ((0.9, 0.98), 1e-3)]
)
def test_stacked_adamw_matches_torch_adamw(betas, eps):
    torch.manual_seed(0)
    w = torch.randn(3, 5, 4)
    p1, p2 = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    ours = StackedAdamW([p1], lr=1e-2, weight_decay=0.1, betas=betas, eps=eps)
    ref = torch.optim.AdamW([p2], lr=1e-2, weight_decay=0.1, betas=betas, eps=eps)
    for step in range(5):
        g = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(step))
        p1.grad, p2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(p1, p2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fast", [False, True], ids=["autograd", "fast"])
def test_regime_betas_and_eps_train_as_torch_adamw(digits_split, fast):
    """A regime's beta1, beta2 and eps reach the optimizer: training equals a plain loop with
    torch.optim.AdamW of the same settings, on the same batches, step by step."""
    import torch.nn.functional as F

    from memlab.engine.train import replica_seed

    common = {"max_epochs": 3, "lr": 1e-2, "batch_size": 16, "weight_decay": 0.1}
    settings = train_regime(**common, stop_at_fit=False, beta1=0.5, beta2=0.9, eps=1e-6)
    mask = small_members(len(digits_split.y_pool), 40, 1, 0)
    ours = train(_mlp([0]), digits_split, mask, settings, use_fast_path=fast)
    ref = _mlp([0])
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1, betas=(0.5, 0.9), eps=1e-6)
    x = torch.from_numpy(digits_split.x_pool)
    y = torch.from_numpy(digits_split.y_pool)
    idx = torch.from_numpy(np.flatnonzero(mask[0]))
    order = torch.Generator().manual_seed(replica_seed(0, 0, 1))  # replica 0's batch order
    for _ in range(3):
        batches = idx[torch.randperm(len(idx), generator=order)]
        for s in range(0, len(idx), 16):
            b = batches[s : s + 16]
            opt.zero_grad()
            F.cross_entropy(ref(x[b].unsqueeze(0))[0], y[b]).backward()
            opt.step()
    for a, b in zip(ours.model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    default = _train(_mlp([0]), digits_split, mask, train_regime(**common, stop_at_fit=False))
    assert not torch.allclose(default.model.weights[0], ours.model.weights[0])


def test_carve_validation_rejects_empty_split():
    from memlab.io import MemlabInputError

    with pytest.raises(MemlabInputError, match="val_fraction"):
        carve_validation(np.ones((2, 3), bool), 0.1, seed=0)


class _Killed(Exception):
    pass


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("make", [_mlp, _cnn, _memnet], ids=["mlp", "cnn", "memory_net"])
@pytest.mark.parametrize(
    "regime",
    [
        {},  # replicas fit and leave the stack at different epochs
        {"weight_decay": 0.05, "dropout": 0.2, "early_stopping": True, "patience": 3},
    ],
)
def test_interrupted_training_resumes_to_identical_weights(digits_split, tmp_path, make, regime):
    r = 3
    mask = small_members(len(digits_split.y_pool), 60, r, 0)
    settings = train_regime(max_epochs=40, lr=1e-2, batch_size=16, log_every=1, **regime)
    val = None
    if settings.early_stopping:
        mask, val = carve_validation(mask, 0.25, seed=0)

    def build():
        return _mlp(range(r), dropout=0.2) if regime and make is _mlp else make(range(r))

    def run(resume, kill_at=None):
        def log(msg):
            if kill_at is not None and msg.startswith(f"epoch {kill_at:4d}/"):
                raise _Killed  # after this epoch's training, before its state is saved
            messages.append(msg)

        messages = []
        # With the gradient sums every 3 epochs (MLPs; the others ignore it).
        res = train(
            build(), digits_split, mask, settings, val=val, resume=resume, log=log,
            gradient_every=3,
        )  # fmt: skip
        return res, messages

    clean, _ = run(None)
    first, last = int(clean.stop_epoch.min()), int(clean.stop_epoch.max())
    # Kill one epoch past a save, after the first replica left the stack if others still train.
    every = 2
    kill_at = -(-first // every) * every + 1
    if kill_at > last:
        kill_at = last // 2 // every * every + 1
    assert 1 < kill_at <= last
    state = tmp_path / "train-state.pt"
    with pytest.raises(_Killed):
        run(Resume(state, every), kill_at=kill_at)
    assert state.exists()
    resumed, messages = run(Resume(state, every))
    assert any(f"after epoch {kill_at - 1}" in m for m in messages), messages[:3]
    assert resumed.stop_epoch.tolist() == clean.stop_epoch.tolist()
    assert resumed.fit_epoch.tolist() == clean.fit_epoch.tolist()
    _assert_same_weights(resumed.model, clean.model)
    pd.testing.assert_frame_equal(resumed.history, clean.history)
    # Every running sum (forgetting, cartography, the cheap estimators) has the same bytes.
    assert resumed.dynamics.keys() == clean.dynamics.keys()
    assert ("dyn_tracin" in clean.dynamics) == (make is _mlp)
    for k, v in clean.dynamics.items():
        assert resumed.dynamics[k].tobytes() == v.tobytes(), k


def test_resume_state_of_another_run_is_ignored(digits_split, tmp_path):
    mask = small_members(len(digits_split.y_pool), 40, 2, 0)
    state = tmp_path / "train-state.pt"
    logs = []

    def fit(lr, resume):
        settings = train_regime(max_epochs=4, lr=lr, batch_size=16, stop_at_fit=False)
        return train(_mlp(range(2)), digits_split, mask, settings, resume=resume, log=logs.append)

    fit(1e-2, Resume(state, 2))
    assert state.exists()  # the caller removes it once its outputs are written
    other = fit(3e-3, Resume(state, 2))
    assert any("saved for other inputs or settings" in m for m in logs)
    plain = fit(3e-3, None)
    _assert_same_weights(other.model, plain.model)
    state.write_bytes(b"PK\x03\x04 truncated")
    fit(3e-3, Resume(state, 2))
    assert any("ignoring unreadable resume state" in m for m in logs)


@pytest.mark.parametrize("setting", [{"beta1": 0.5}, {"beta2": 0.98}, {"eps": 1e-6}])
def test_resume_state_of_other_adamw_settings_is_ignored(digits_split, tmp_path, setting):
    """The betas and eps are part of the run's fingerprint, like the learning rate."""
    mask = small_members(len(digits_split.y_pool), 40, 2, 0)
    state, logs = tmp_path / "train-state.pt", []

    def fit(resume, **changed):
        settings = train_regime(max_epochs=4, lr=1e-2, batch_size=16, stop_at_fit=False, **changed)
        return train(_mlp(range(2)), digits_split, mask, settings, resume=resume, log=logs.append)

    fit(Resume(state, 2))
    other = fit(Resume(state, 2), **setting)
    assert any("saved for other inputs or settings" in m for m in logs)
    _assert_same_weights(other.model, fit(None, **setting).model)


def test_killed_chunked_run_resumes_each_chunk(digits_split, tmp_path, monkeypatch):
    """Wide models train in chunks of replicas: a kill in a later chunk keeps the earlier ones."""
    from memlab.engine import runs

    split = digits_split
    members = small_members(len(split.y_pool), 60, 5, 0)
    variant = MLP("mlp", 16, 2)
    settings = train_regime(max_epochs=12, lr=1e-2, batch_size=16, stop_at_fit=False)
    flipped = np.zeros(len(split.y_pool), bool)
    monkeypatch.setattr(runs, "STACK_PARAMS", 2 * 1482)  # chunks of replicas 0-1, 2-3, 4
    resume = Resume(tmp_path / "train-state.pt", 4)
    epochs = []

    def run(resume, kill_in_chunk=None):
        def log(msg):
            epochs.extend([msg] if msg.startswith("epoch    1/") else [])
            # Killed at epoch 10 of the given chunk (its last saved state is epoch 8).
            if len(epochs) == kill_in_chunk and msg.startswith("epoch   10/"):
                raise _Killed

        return runs.train_run(
            split, split.y_pool, flipped, members, variant, settings, seed=0, resume=resume, log=log
        )

    state, _, hist = run(None)
    epochs.clear()
    with pytest.raises(_Killed):
        run(resume, kill_in_chunk=2)
    assert [p.name for p in resume.files()] == ["train-state-0.pt", "train-state-2.pt"]
    logs = []
    state2, _, hist2 = runs.train_run(
        split,
        split.y_pool,
        flipped,
        members,
        variant,
        settings,
        seed=0,
        resume=resume,
        log=logs.append,
    )
    assert any("train-state-0.pt after epoch 12" in m for m in logs)  # done, not redone
    assert any("train-state-2.pt after epoch 8" in m for m in logs)
    for k in state:
        assert torch.equal(state[k], state2[k]), k
    pd.testing.assert_frame_equal(to_frame(hist), to_frame(hist2))


def test_loop_state_saves_as_plain_data_and_continues_identically(digits_split, tmp_path):
    """state_dict() holds every field; a loaded copy trains on to the same bits."""
    import dataclasses

    split = digits_split
    mask, val = carve_validation(small_members(len(split.y_pool), 60, 3, 0), 0.25, seed=0)
    settings = train_regime(max_epochs=10, lr=1e-2, batch_size=16, dropout=0.2, early_stopping=True)
    data = TrainData.from_arrays(split.x_pool, split.y_pool, split.x_test, split.y_test, None)

    def trainer():
        model = _mlp(range(3), dropout=0.2)
        state = LoopState.start(model, mask, val, settings, seed=0, replicas=range(3))
        return Trainer(state, data, settings, replicas=range(3), log=lambda s: None)

    a = trainer()
    a.train_epoch()
    a.state.drop_rows(torch.tensor([True, False, True]))
    a.train_epoch()
    saved = a.state.state_dict()
    assert set(saved) == {f.name for f in dataclasses.fields(LoopState)}
    torch.save(saved, tmp_path / "state.pt")
    b = trainer()
    b.state.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert b.state.model.n_replicas == 2 and b.state.replica.tolist() == [0, 2]
    for t in (a, b):
        t.train_epoch()
    _assert_same_weights(a.state.model, b.state.model)
    for x, y in zip(a.state.opt.exp_avg_sq, b.state.opt.exp_avg_sq, strict=True):
        assert torch.equal(x, y)


def test_resume_state_of_an_older_format_is_ignored(digits_split, tmp_path):
    mask = small_members(len(digits_split.y_pool), 40, 2, 0)
    state = tmp_path / "train-state.pt"
    torch.save({"format": "memlab-train-state/1", "epoch": 2}, state)
    logs = []
    settings = train_regime(max_epochs=2, lr=1e-2, batch_size=16, stop_at_fit=False)
    train(_mlp(range(2)), digits_split, mask, settings, resume=Resume(state, 1), log=logs.append)
    assert any(f"not a {FORMAT} file" in m for m in logs), logs
    assert not any(m.startswith("resuming") for m in logs)


def test_modular_addition_trains_with_a_token_embedding(modular_split):
    """The library end to end on token data: train_run builds the embedded MLP, trains it, and
    evaluate_run rebuilds it from the checkpoint (its table included)."""
    from memlab.engine import runs

    split = modular_split
    members = small_members(len(split.y_pool), 44, 2, 0)
    variant = MLP("tok", 32, 1, 16)
    regime = train_regime(max_epochs=60, lr=1e-2, batch_size=44, beta2=0.98)  # full batch
    no_flips = np.zeros(len(split.y_pool), bool)
    state, arrays, history = runs.train_run(
        split, split.y_pool, no_flips, members, variant, regime, seed=0, log=lambda s: None
    )
    assert state["embedding"].shape == (2, 11, 16) and state["weights.0"].shape == (2, 32, 32)
    assert (arrays["fit_epoch"] > 0).all()  # both memorize their 44 pairs
    checkpoint = checkpoint_of(state, arrays, variant, regime)
    labels = {"y_pool": split.y_pool, "flipped": no_flips}
    ev, _ = runs.evaluate_run(checkpoint, split, labels, {})
    assert ev["pool_correct"][arrays["train_mask"]].all()
    last = to_frame(history).groupby("replica")["train_accuracy"].last()
    assert (last == 1.0).all()


def test_a_slow_job_logs_progress_every_progress_seconds(digits_split, monkeypatch):
    """Besides every `log_every` epochs, a line at least every PROGRESS_SECONDS (0 here)."""
    import memlab.engine.train

    mask = small_members(len(digits_split.y_pool), 40, 2, 0)
    settings = train_regime(max_epochs=5, batch_size=16, stop_at_fit=False, log_every=1000)

    def epochs_logged() -> list[str]:
        logs: list[str] = []
        train(_mlp(range(2)), digits_split, mask, settings, log=logs.append)
        return [m.split()[1] for m in logs if m.startswith("epoch")]

    assert epochs_logged() == ["1/5", "5/5"]  # the first, and the last (every replica done)
    monkeypatch.setattr(memlab.engine.train, "PROGRESS_SECONDS", 0.0)
    assert epochs_logged() == ["1/5", "2/5", "3/5", "4/5", "5/5"]


def _assert_same_result(a, b):
    """Two TrainResults with the same bits: history (every column), epochs, weights, dynamics."""
    assert a.history.equals(b.history)
    assert a.stop_epoch.tolist() == b.stop_epoch.tolist()
    assert a.fit_epoch.tolist() == b.fit_epoch.tolist()
    assert a.stop_reason == b.stop_reason
    _assert_same_weights(a.model, b.model)
    assert a.dynamics.keys() == b.dynamics.keys()
    for k in a.dynamics:
        np.testing.assert_array_equal(a.dynamics[k], b.dynamics[k], err_msg=k)


def _count_calls(monkeypatch, cls, name):
    calls = []
    method = getattr(cls, name)

    def counted(self, *args, **kw):
        calls.append(1)
        return method(self, *args, **kw)

    monkeypatch.setattr(cls, name, counted)
    return calls


@pytest.mark.parametrize(
    ("r", "regime"),
    [
        (3, {}),  # replicas fit (and leave the stack) at different epochs
        (3, {"stop_at_fit": False}),
        (1, {"stop_at_fit": False}),  # the 2-D single-model path
        (3, {"weight_decay": 0.05, "early_stopping": True, "patience": 3}),
    ],
)
def test_full_batch_forward_reuse_changes_no_bit(digits_split, monkeypatch, r, regime):
    """Full batch: the evaluation's forward pass is the next step's (Trainer.evaluate_ahead);
    the results equal those of the run that computes it twice, to the bit."""
    from memlab.data.datasets import flip_labels
    from memlab.engine.train import Trainer

    n = 100
    mask = small_members(len(digits_split.y_pool), n, r, 0)
    y_noisy, flipped = flip_labels(digits_split.y_pool, 0.2, 10, seed=0)
    split = dataclasses.replace(digits_split, y_pool=y_noisy)
    settings = train_regime(max_epochs=40, lr=3e-2, batch_size=n, **regime)
    val = None
    if settings.early_stopping:
        mask, val = carve_validation(mask, 0.25, seed=0)

    def run(reuse):
        return train(
            _mlp(range(r), width=64),
            split,
            mask,
            settings,
            val=val,
            flipped=flipped,
            reuse_forward=reuse,
        )

    ahead = _count_calls(monkeypatch, Trainer, "evaluate_ahead")
    reused = run(True)
    assert len(ahead) == int(reused.stop_epoch.max())  # every epoch's evaluation
    plain = run(False)
    assert len(ahead) == int(reused.stop_epoch.max())  # none without the reuse
    _assert_same_result(reused, plain)
    h = reused.history
    assert h["train_flipped_accuracy"].notna().all() and h["train_clean_accuracy"].notna().all()
    if settings.stop_at_fit and not settings.early_stopping:
        assert len(set(reused.stop_epoch.tolist())) > 1, "no replica left the stack early"


def test_full_batch_forward_reuse_with_a_token_embedding(modular_split, monkeypatch):
    """The embedded MLP (an extra layer before the hidden ones), full batch, to the bit."""
    from memlab.engine.train import Trainer
    from memlab.engine.train import init_seeds as seeds

    r, n = 2, 40
    mask = small_members(len(modular_split.y_pool), n, r, 0)
    settings = train_regime(max_epochs=30, lr=1e-2, batch_size=512, stop_at_fit=False)

    def run(reuse):
        model = StackedMLP(
            22, 11, width=16, depth=1, dropout=0.0, replica_seeds=seeds(0, range(r)),
            embedding=16, tokens=(2, 11),
        )  # fmt: skip
        return train(model, modular_split, mask, settings, reuse_forward=reuse)

    ahead = _count_calls(monkeypatch, Trainer, "evaluate_ahead")
    _assert_same_result(run(True), run(False))
    assert len(ahead) == settings.max_epochs


def test_full_batch_run_resumes_to_the_uninterrupted_bits(digits_split, tmp_path):
    """The kept forward pass is never saved: a resumed run computes it again, to the same bits,
    and peeking the next batch order leaves the saved random streams as they were."""
    r, n = 3, 100
    mask = small_members(len(digits_split.y_pool), n, r, 0)
    settings = train_regime(max_epochs=30, lr=3e-2, batch_size=n, stop_at_fit=False, log_every=1)
    kill_at = 13  # one epoch past a save (every 4)

    def log(msg):
        if msg.startswith(f"epoch {kill_at:4d}/"):
            raise _Killed

    clean = train(_mlp(range(r)), digits_split, mask, settings)
    state = tmp_path / "train-state.pt"
    with pytest.raises(_Killed):
        train(_mlp(range(r)), digits_split, mask, settings, resume=Resume(state, 4), log=log)
    messages = []
    resumed = train(
        _mlp(range(r)), digits_split, mask, settings, resume=Resume(state, 4), log=messages.append
    )
    assert any("after epoch 12" in m for m in messages), messages[:3]
    _assert_same_result(resumed, clean)


@pytest.mark.parametrize(
    ("make", "batch_size", "dropout", "reuse"),
    [
        (lambda: _mlp(range(2)), 60, 0.0, True),
        (lambda: _mlp(range(2)), 59, 0.0, False),  # two steps an epoch
        (lambda: _mlp(range(2), dropout=0.2), 60, 0.2, False),  # the step's forward has masks
        (lambda: _mlp(range(2), width=10), 60, 0.0, False),  # rows' bits depend on position
        (lambda: _cnn(range(2)), 60, 0.0, False),
        (lambda: _memnet(range(2)), 60, 0.0, False),
    ],
)
def test_forward_reuse_only_where_it_changes_no_bit(digits_split, make, batch_size, dropout, reuse):
    mask = small_members(len(digits_split.y_pool), 60, 2, 0)
    settings = train_regime(max_epochs=1, batch_size=batch_size, dropout=dropout)
    data = TrainData.from_arrays(
        digits_split.x_pool, digits_split.y_pool, digits_split.x_test, digits_split.y_test, None
    )
    state = LoopState.start(make(), mask, None, settings, seed=0, replicas=range(2))
    assert Trainer(state, data, settings, replicas=range(2)).reuse is reuse
    off = Trainer(state, data, settings, replicas=range(2), reuse_forward=False)
    assert not off.reuse
