"""The memory-augmented network (memlab.engine.memory_net): its memory read has the known limits
(1-NN on its own embedding, the plain head), training never reads an example's own slot, and the
evaluate path adds its memory-off metrics beside the memory-on ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import checkpoint_of, full, run_columns, smoke_with_sizes, train, train_regime

from memlab.columnar import to_frame
from memlab.data.datasets import balanced_subsets
from memlab.engine.memory_net import StackedMemoryNet
from memlab.engine.models import StackedMLP
from memlab.engine.runs import evaluate_run, train_run
from memlab.engine.train import init_seeds
from memlab.io import MemlabInputError
from memlab.plan.kinds import MemoryNet
from memlab.plan.study import plan_study


def _net(replicas=range(3), mix=None, temperature=0.03, width=16):
    seeds = init_seeds(0, replicas)
    return StackedMemoryNet(
        64, 10, width=width, depth=1, dropout=0.0, replica_seeds=seeds, mix=mix,
        temperature=temperature,
    )  # fmt: skip


def _remember(net, split, members, y=None):
    y = split.y_pool if y is None else y
    slots = torch.from_numpy(np.stack([np.flatnonzero(m) for m in members]))
    net.remember(torch.from_numpy(split.x_pool), torch.from_numpy(y.astype(np.int64)), slots)
    return slots


def _random_labels(split, seed=0):
    return np.random.default_rng(seed).integers(0, 10, len(split.y_pool))


def test_memory_only_at_zero_temperature_is_1nn_on_its_own_embedding(digits_split):
    members = balanced_subsets(len(digits_split.y_pool), 200, 3, 0)
    # Trained a little first, so that the embedding is the network's own, not its initial one.
    net = train(_net(mix=0.5), digits_split, members, train_regime(max_epochs=3)).model
    net.fixed_mix, net.temperature = 1.0, 1e-6
    net.register_parameter("mix_logit", None)
    slots = _remember(net, digits_split, members)
    net.eval()
    x = torch.from_numpy(digits_split.x_test)
    with torch.no_grad():
        pred = net(x).argmax(-1)
        # 1-NN by cosine similarity of the embeddings, each replica over its own training subset.
        q = F.normalize(net.features(x), dim=-1)
        keys = F.normalize(net.features(torch.from_numpy(digits_split.x_pool)[slots]), dim=-1)
        nearest = torch.bmm(q, keys.transpose(1, 2)).argmax(-1)
        # The memory holds the subset: each member queried on itself finds itself.
        own = net(torch.from_numpy(digits_split.x_pool)[slots]).argmax(-1)
    assert torch.equal(pred, torch.from_numpy(digits_split.y_pool)[slots.gather(1, nearest)])
    assert torch.equal(own, torch.from_numpy(digits_split.y_pool)[slots])


def test_memory_off_is_its_plain_head_and_mix_0_trains_exactly_as_an_mlp(digits_split):
    members = balanced_subsets(len(digits_split.y_pool), 100, 2, 0)
    settings = train_regime(max_epochs=5)
    net = train(_net(range(2), mix=0.0, width=8), digits_split, members, settings).model
    mlp = StackedMLP(64, 10, width=8, depth=1, dropout=0.0, replica_seeds=init_seeds(0, range(2)))
    mlp = train(mlp, digits_split, members, settings, use_fast_path=False).model
    for a, b in zip(net.parameters(), mlp.parameters(), strict=True):
        assert torch.equal(a, b)
    learned = train(_net(range(2)), digits_split, members, settings).model
    _remember(learned, digits_split, members)
    learned.eval()
    x = torch.from_numpy(digits_split.x_test)
    with_memory = learned(x)
    learned.memory_on = False
    assert torch.equal(learned(x), learned.head(learned.features(x)))
    assert not torch.allclose(with_memory, torch.log_softmax(learned(x), -1))


@torch.no_grad()
def test_an_examples_own_slot_is_never_read_in_training(digits_split):
    members = balanced_subsets(len(digits_split.y_pool), 200, 2, 0)
    y = _random_labels(digits_split)
    net = _net(range(2), mix=1.0, temperature=1e-4)
    slots = _remember(net, digits_split, members, y)
    x = torch.from_numpy(digits_split.x_pool)[slots]
    stored = torch.from_numpy(y)[slots]
    # With the whole memory a member finds itself; leave-one-out, random labels are chance.
    assert (net(x).argmax(-1) == stored).float().mean() == 1.0
    loo = (net(x, own=slots).argmax(-1) == stored).float().mean()
    assert loo < 0.3
    # The masked read is the read of a memory without that slot.
    p = net.read(net.features(x[:, :5]), own=slots[:, :5])
    q = F.normalize(net.features(x), dim=-1)
    for r in range(2):
        for i in range(5):
            others = torch.ones(slots.shape[1], dtype=torch.bool)
            others[i] = False
            sim = q[r, i] @ net.keys[r, others].T
            attention = torch.softmax(sim / net.temperature, -1)
            alone = torch.zeros(10).scatter_add(0, stored[r, others], attention)
            torch.testing.assert_close(p[r, i], alone)


class _Spy(StackedMemoryNet):
    """Records the ``own`` slots of every call made in training mode."""

    def forward(self, x, dropout_gen=None, own=None):
        if self.training:
            self.calls.append(own)
        return super().forward(x, dropout_gen, own)


def test_training_steps_and_train_metrics_read_leave_one_out(digits_split):
    members = balanced_subsets(len(digits_split.y_pool), 200, 2, 0)
    y = _random_labels(digits_split)
    seeds = init_seeds(0, range(2))
    net = _Spy(64, 10, width=16, depth=1, dropout=0.0, replica_seeds=seeds, mix=1.0,
               temperature=1e-4)  # fmt: skip
    net.calls = []
    from memlab.engine.train import train_stacked

    split = digits_split
    res = train_stacked(
        net, split.x_pool, y, members, None, split.x_test, split.y_test,
        train_regime(max_epochs=1, batch_size=50), seed=0, log=lambda s: None,
    )  # fmt: skip
    # 4 steps of 50, each reading the memory without the batch's own slots.
    assert len(net.calls) == 4 and all(own is not None for own in net.calls)
    assert {tuple(own.shape) for own in net.calls} == {(2, 50)}
    stepped = torch.cat(net.calls, 1).sort(1).values
    assert torch.equal(stepped, torch.from_numpy(np.stack([np.flatnonzero(m) for m in members])))
    # The epoch's train accuracy is leave-one-out too: chance on random labels, not 100%.
    assert res.history["train_accuracy"].max() < 0.3


def _variant(**kw):
    return MemoryNet("mem", 16, 1, kw.get("mix"), kw.get("temperature", 0.03))


def test_evaluation_adds_memory_off_rows_and_recall_of_the_identity_is_training_accuracy(
    digits_split,
):
    members = balanced_subsets(len(digits_split.y_pool), 100, 2, 0)
    y = digits_split.y_pool
    variant, regime = _variant(), train_regime(max_epochs=20)
    state, arrays, _ = train_run(
        digits_split, y, np.zeros(len(y), bool), members, variant, regime, seed=0,
        log=lambda s: None,
    )  # fmt: skip
    checkpoint = checkpoint_of(state, arrays, variant, regime)
    labels = {"y_pool": y, "flipped": np.zeros(len(y), bool)}
    identity = {("identity", 1): digits_split.x_pool}
    metrics = to_frame(evaluate_run(checkpoint, digits_split, labels, {}, identity)[1])
    assert set(metrics["memory"]) == {"on", "off"}
    acc = metrics[metrics["metric"] == "accuracy"]

    def accuracy(memory, split):
        return acc.query("memory == @memory and split == @split")["value"].to_numpy()

    for memory in ("on", "off"):
        np.testing.assert_allclose(accuracy(memory, "recall"), accuracy(memory, "train"), rtol=1e-6)
    # The memory holds every training example: with it on they are all recalled.
    assert (accuracy("on", "train") == 1.0).all()
    assert not np.array_equal(accuracy("on", "heldout"), accuracy("off", "heldout"))


def _memory_config(*sizes, **model):
    config = smoke_with_sizes(*sizes)
    config["models"] = {"mem": {"kind": "memory_net", "widths": [16], **model}}
    return full(config)


def test_a_memory_it_cannot_train_is_one_clear_line_before_any_job(tmp_path):
    plan_study(_memory_config({"per_class": 1}), tmp_path)  # the head learns; mix is learned
    with pytest.raises(MemlabInputError, match=r"mem-w16 .* size 10 .* mix 1 \(memory only\)"):
        plan_study(_memory_config({"per_class": 1}, mix=1.0), tmp_path)
    config = _memory_config(2)
    config["regimes"] = {"es": {"early_stopping": True}}
    config["training"]["val_fraction"] = 0.5
    with pytest.raises(MemlabInputError, match="its memory would hold 1 example"):
        plan_study(full(config), tmp_path)


def _memory_metrics(on, off, mix):
    """Metrics of a memory network on 3 replicas: held-out accuracy with the memory on and off,
    and the learned mix (a training fact of the memory-on rows)."""
    cols = run_columns(model="mem-w8", model_name="mem", kind="memory_net", shots=1, size=10)
    rows = []
    for replica in range(3):
        for memory, values in (("on", on), ("off", off)):
            rows.append(cols | dict(memory=memory, replica=replica, split="heldout"))
            rows[-1] |= dict(perturbation="none", severity=0, metric="accuracy")
            rows[-1] |= dict(value=values[replica])
        rows.append(cols | dict(memory="on", replica=replica, split="train", perturbation="none"))
        rows[-1] |= dict(severity=0, metric="mix", value=mix[replica])
    knn = run_columns(model="knn-k1", model_name="knn", kind="knn", regime="memory", k=1)
    rows.append(knn | dict(replica=0, split="heldout", perturbation="none", severity=0))
    rows[-1] |= dict(metric="accuracy", value=0.5)
    return pd.DataFrame(rows)


def test_memory_effect_table_figure_and_finding():
    from memlab.analysis.metrics import memory_effect
    from memlab.reporting.figures import memory as memory_figure
    from memlab.reporting.findings import study_findings
    from memlab.reporting.tables import StudyTables

    metrics = _memory_metrics(on=[0.8, 0.9, 0.7], off=[0.5, 0.7, 0.6], mix=[0.5, 0.6, 0.7])
    table = memory_effect(metrics)
    assert len(table) == 1 and table["memory"].tolist() == ["on"]
    row = table.iloc[0]
    assert row["accuracy_on"] == pytest.approx(0.8) and row["accuracy_off"] == pytest.approx(0.6)
    # Paired per replica: differences 0.3, 0.2, 0.1.
    assert row["difference"] == pytest.approx(0.2)
    assert row["difference_se"] == pytest.approx(0.1 / np.sqrt(3))
    assert row["mix"] == pytest.approx(0.6) and row["n_replicas"] == 3
    tables = StudyTables(metrics, pd.DataFrame(), memory_effect=table)
    fig = memory_figure(tables)
    assert len(fig.axes[0].containers) == 1  # one run, one errorbar series
    found = {f.key: f for f in study_findings(tables)}
    answer = found["memory"].answer
    start = (
        "With the memory on rather than off, the memory network of width 8 (no regularization) "
        "(mix 0.60) gains +20.0 points ["
    )
    assert answer.startswith(start)
    assert "held-out at 1 shot" in answer
    assert found["memory"].numbers["d_held-out_at_1_shot"].value == pytest.approx(0.2)
