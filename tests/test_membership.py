"""RMIA (Zarifzadeh, Liu & Shokri 2024) against known answers and a brute-force count."""

from __future__ import annotations

import numpy as np
import pytest

from memlab.data import balanced_subsets
from memlab.membership import (
    attack_scores,
    evaluate_attacks,
    offline_reference,
    rmia_log_ratios,
    rmia_scores,
)
from memlab.memorization import roc_auc


def _loss(p: np.ndarray) -> np.ndarray:
    return -np.log(p)


def test_rmia_separable_case_has_auc_one():
    # Every replica gives its members p = 0.9 and its non-members p = 0.1 (times a little noise),
    # so the references of members and non-members average alike; the population's p is 0.05 or
    # 0.5 under every replica.
    rng = np.random.default_rng(0)
    members = balanced_subsets(200, 100, 16, seed=0)
    p = np.where(members, 0.9, 0.1) * np.exp(rng.normal(0, 0.02, members.shape))
    p_z = np.repeat(np.r_[np.full(50, 0.05), np.full(50, 0.5)][None], 16, 0)
    p_z = p_z * np.exp(rng.normal(0, 0.02, p_z.shape))
    for online in (True, False):
        s = rmia_scores(_loss(p), members, _loss(p_z), online=online)
        assert roc_auc(s, members) == 1.0
        assert (s[members] == 1.0).all()


def test_rmia_without_membership_signal_is_at_chance():
    # p independent of membership, population from the same distribution. R = 16 targets of
    # n = 2000 examples, half members each: the pooled AUC over n1 = n2 = 16000 scores has null
    # standard error sqrt((n1 + n2 + 1) / (12 n1 n2)) = 0.0032 (measured: 0.0028 over 40 seeds,
    # largest deviation 0.008), so 4 standard errors, 0.013, bound it.
    r, n, m = 16, 2000, 1000
    n1 = n2 = r * n // 2
    tol = 4 * np.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        members = balanced_subsets(n, n // 2, r, seed=seed)
        p = rng.beta(2, 1, (r, n))
        p_z = rng.beta(2, 1, (r, m))
        for online in (True, False):
            s = rmia_scores(_loss(p), members, _loss(p_z), online=online)
            assert abs(roc_auc(s, members) - 0.5) < tol


def _brute_force(p, members, p_z, *, online, a, gamma):
    """Pr_z[r(x) / r(z) >= gamma] by loops, in linear probability space."""
    r_count = p.shape[0]
    out = np.zeros(p.shape)
    for t in range(r_count):
        others = [s for s in range(r_count) if s != t]
        rz = np.empty(p_z.shape[1])
        for j in range(p_z.shape[1]):
            ref = np.mean([p_z[s, j] for s in others])
            rz[j] = p_z[t, j] / (ref if online else ((1 + a) * ref + (1 - a)) / 2)
        for i in range(p.shape[1]):
            refs = [p[s, i] for s in others if online or not members[s, i]]
            if not refs:
                continue  # no OUT reference: uninformative, 0
            ref = np.mean(refs)
            rx = p[t, i] / (ref if online else ((1 + a) * ref + (1 - a)) / 2)
            out[t, i] = np.mean([rx / rz[j] >= gamma for j in range(len(rz))])
    return out


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize(("a", "gamma"), [(0.3, 1.0), (0.0, 2.0), (0.7, 0.5)])
def test_rmia_score_matches_brute_force_with_ties(online, a, gamma):
    rng = np.random.default_rng(3)
    r, n, m = 5, 12, 9
    members = rng.random((r, n)) < 0.5
    members[:, -1] = True  # never OUT: offline has no reference for it (score 0)
    p = rng.uniform(0.05, 1.0, (r, n))
    p_z = rng.uniform(0.05, 1.0, (r, m))
    # Ties: pool examples 0-2 are population examples 0-2 under every replica and OUT of all of
    # them, so their references match too and r(x) == r(z) exactly.
    p[:, :3] = p_z[:, :3]
    members[:, :3] = False
    got = rmia_scores(_loss(p), members, _loss(p_z), online=online, a=a, gamma=gamma)
    want = _brute_force(p, members, p_z, online=online, a=a, gamma=gamma)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    if gamma == 1.0:  # each tie counts its own population sample (>=, not >)
        assert (got[:, :3] >= 1 / m).all()
    if not online:
        assert (got[:, -1] == 0).all()


def test_rmia_offline_with_a_one_is_the_out_mean():
    log_p_out = np.log(np.random.default_rng(4).uniform(1e-6, 1.0, 100))
    assert np.array_equal(offline_reference(log_p_out, 1.0), log_p_out)
    np.testing.assert_allclose(
        np.exp(offline_reference(log_p_out, 0.3)), (1.3 * np.exp(log_p_out) + 0.7) / 2, rtol=1e-12
    )
    # Through the ratios: r(x) = p(x | theta_t) / mean over the OUT others.
    rng = np.random.default_rng(5)
    members = balanced_subsets(30, 15, 6, seed=5)
    p, p_z = rng.uniform(0.1, 1, (6, 30)), rng.uniform(0.1, 1, (6, 8))
    log_rx, log_rz, defined = rmia_log_ratios(_loss(p), members, _loss(p_z), online=False, a=1.0)
    assert defined.all()
    for t in range(6):
        others = np.arange(6) != t
        out = others[:, None] & ~members
        want_x = p[t] / ((p * out).sum(0) / out.sum(0))
        np.testing.assert_allclose(np.exp(log_rx[t]), want_x, rtol=1e-12)
        np.testing.assert_allclose(np.exp(log_rz[t]), p_z[t] / p_z[others].mean(0), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        offline_reference(log_p_out, 1.5)


def test_rmia_is_stable_for_huge_losses():
    # exp(-loss) underflows to 0 in float64 past ~745; the log-space ratios do not.
    members = balanced_subsets(40, 20, 4, seed=6)
    loss = np.where(members, 1.0, 900.0) + np.random.default_rng(6).random(members.shape)
    test_loss = np.full((4, 10), 900.0) + np.random.default_rng(7).random((4, 10))
    for online in (True, False):
        log_rx, log_rz, defined = rmia_log_ratios(loss, members, test_loss, online=online)
        assert defined.all() and np.isfinite(log_rx).all() and np.isfinite(log_rz).all()
        s = rmia_scores(loss, members, test_loss, online=online)
        assert roc_auc(s, members) > 0.9


def test_rmia_undefined_without_references():
    loss, test_loss = np.ones((1, 5)), np.ones((1, 3))
    members = np.array([[True, False, True, False, True]])
    for online in (True, False):
        assert (rmia_scores(loss, members, test_loss, online=online) == 0).all()


def test_attack_table_gains_rmia_rows_given_test_losses():
    rng = np.random.default_rng(8)
    members = balanced_subsets(60, 30, 4, seed=8)
    correct = rng.random(members.shape) < 0.8
    loss, conf = rng.random(members.shape), rng.normal(size=members.shape)
    test_loss = rng.random((4, 20))
    res, curve = evaluate_attacks(correct, loss, conf, members, test_loss=test_loss)
    assert {"rmia_online", "rmia_offline"} <= set(res["attack"])
    assert {"rmia_online", "rmia_offline"} <= set(curve["attack"])
    rmia = res.set_index("attack").loc[["rmia_online", "rmia_offline"]]
    assert rmia["auc"].between(0, 1).all() and (rmia["members"] == members.sum()).all()
    # Without test losses, or with fewer than 3 replicas (as LiRA), no RMIA.
    assert not any(k.startswith("rmia") for k in attack_scores(correct, loss, conf, members))
    res2, _ = evaluate_attacks(
        correct[:2], loss[:2], conf[:2], members[:2], test_loss=test_loss[:2]
    )
    assert set(res2["attack"]) == {"gap", "loss"}
    with pytest.raises(ValueError, match="replicas"):
        rmia_scores(loss, members, test_loss[:3], online=True)
