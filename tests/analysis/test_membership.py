"""RMIA (Zarifzadeh, Liu & Shokri 2024) against known answers and a brute-force count; LiRA's
choices against the reference implementation; membership results per slice of the pool."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from memlab.analysis.membership import (
    _shadow_stats,
    attack_scores,
    evaluate_attacks,
    lira_scores,
    offline_reference,
    rmia_log_ratios,
    rmia_scores,
)
from memlab.analysis.memorization import roc_auc
from memlab.data.datasets import balanced_subsets


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


# ------------------------------------------------------------------------------------------ LiRA
# Known answers for each choice against the reference implementation (Carlini et al. 2022,
# tensorflow/privacy research/mi_lira_2021: plot.py generate_ours / generate_ours_offline,
# score.py): median location, per-example vs fixed variance, the offline test, the variance
# floor, equal shadow counts, the logit-scaled confidence and evaluation mode.


def _all_out(column: list[float]) -> tuple[np.ndarray, np.ndarray]:
    conf = np.array(column, float)[:, None]
    return conf, np.zeros(conf.shape, bool)


def test_lira_offline_tail_and_density_use_the_median_and_np_std():
    # Target 0 scores 5 against the OUT shadows 1, 2, 9: median 2, mean 4, np.std sqrt(38/3).
    conf, members = _all_out([5.0, 1.0, 2.0, 9.0])
    sd = np.sqrt(38 / 3)
    assert np.std([1.0, 2.0, 9.0]) == pytest.approx(sd)
    tail = lira_scores(conf, members, online=False, fixed_variance=False)
    density = lira_scores(conf, members, online=False, fixed_variance=False, offline_test="density")
    mean = lira_scores(conf, members, online=False, fixed_variance=False, center="mean")
    assert tail[0, 0] == pytest.approx(np.log(norm.cdf(5.0, 2.0, sd)), abs=1e-12)
    assert tail[0, 0] == pytest.approx(np.log1p(-norm.sf(5.0, 2.0, sd)), abs=1e-12)  # 1 - Pr[Z > c]
    assert density[0, 0] == pytest.approx(-norm.logpdf(5.0, 2.0, sd), abs=1e-12)
    assert mean[0, 0] == pytest.approx(norm.logcdf(5.0, 4.0, sd), abs=1e-12)
    # The tail is one-sided, the density two-sided: a confidence as far *below* the median
    # scores as high as one above under the density, near 0 (log Phi -> -inf) under the tail.
    lo, _ = _all_out([2.0 - 3.0, 1.0, 2.0, 9.0])
    d_lo = lira_scores(lo, members, online=False, fixed_variance=False, offline_test="density")
    assert d_lo[0, 0] == pytest.approx(density[0, 0], abs=1e-12)
    assert lira_scores(lo, members, online=False, fixed_variance=False)[0, 0] < tail[0, 0]


def test_lira_median_of_an_even_count_and_leave_one_out():
    # Shadows of target 1 are 3, 2, 9, 4 (target 1's own 100 left out): median (3 + 4) / 2.
    conf, members = _all_out([3.0, 100.0, 2.0, 9.0, 4.0])
    s = lira_scores(conf, members, online=False, fixed_variance=False, offline_test="density")
    assert s[1, 0] == pytest.approx(-norm.logpdf(100.0, 3.5, np.std([3.0, 2.0, 9.0, 4.0])))


def test_lira_online_is_the_log_density_ratio_around_the_medians():
    # Target 0 is IN; its IN shadows 1 and 2 give 1.5 and std 0.5, its OUT shadows -1, -2, -6
    # are cut to the first two (every target gets 2 IN and 2 OUT shadows): -1.5 and 0.5.
    conf = np.array([[1.2], [1.0], [2.0], [-1.0], [-2.0], [-6.0]])
    members = np.array([[True], [True], [True], [False], [False], [False]])
    s = lira_scores(conf, members, online=True, fixed_variance=False)
    want = norm.logpdf(1.2, 1.5, 0.5) - norm.logpdf(1.2, -1.5, 0.5)
    assert s[0, 0] == pytest.approx(want, abs=1e-12)
    # Without equal counts target 0 keeps all three OUT shadows: median -2, np.std of them.
    s = lira_scores(conf, members, online=True, fixed_variance=False, equalize=False)
    want = norm.logpdf(1.2, 1.5, 0.5) - norm.logpdf(1.2, -2.0, np.std([-1.0, -2.0, -6.0]))
    assert s[0, 0] == pytest.approx(want, abs=1e-12)


def test_lira_per_example_vs_pooled_vs_global_variance():
    # Two examples, all OUT; target 0's shadows: example A at -1, 1 (mean 0, variance 1),
    # example B at 9, 15 (mean 12, variance 9). Pooled: (1 + 9) / 2 = 5. Global (np.std of all
    # four about their mean 6): (49 + 25 + 9 + 81) / 4 = 41.
    conf = np.array([[0.5, 13.0], [-1.0, 9.0], [1.0, 15.0]])
    members = np.zeros(conf.shape, bool)
    assert np.var([-1.0, 1.0, 9.0, 15.0]) == 41.0
    kw = {"online": False, "offline_test": "density"}
    per = lira_scores(conf, members, fixed_variance=False, **kw)[0]
    pooled = lira_scores(conf, members, fixed_variance=True, **kw)[0]
    glob = lira_scores(conf, members, fixed_variance=True, fixed_estimate="global", **kw)[0]
    np.testing.assert_allclose(per, -norm.logpdf([0.5, 13.0], [0.0, 12.0], [1.0, 3.0]))
    np.testing.assert_allclose(pooled, -norm.logpdf([0.5, 13.0], [0.0, 12.0], np.sqrt(5.0)))
    np.testing.assert_allclose(glob, -norm.logpdf([0.5, 13.0], [0.0, 12.0], np.sqrt(41.0)))


def test_lira_variance_floor_keeps_identical_shadows_finite():
    # Identical shadows (a k-NN bank, a saturated confidence) have variance 0: floored at 1e-4
    # (sd 0.01), where the reference code's sd + 1e-30 gives a density of about e^68 or 0.
    conf, members = _all_out([2.0, 2.0, 2.0, 2.0])
    s = lira_scores(conf, members, online=False, fixed_variance=False, offline_test="density")
    np.testing.assert_allclose(s, -norm.logpdf(2.0, 2.0, 0.01))


def test_lira_leave_one_out_median_and_equal_counts_match_brute_force():
    rng = np.random.default_rng(9)
    r, n = 9, 40
    conf = rng.normal(size=(r, n))
    conf[:, 5] = 1.0  # ties
    members = balanced_subsets(n, 25, r, seed=3)
    for equalize in (True, False):
        for mask in (members, ~members):
            st = _shadow_stats(conf, mask, equalize=equalize)
            k = int((mask.sum(0)[None] - mask).min())
            for t in range(r):
                for i in range(n):
                    v = [conf[s, i] for s in range(r) if s != t and mask[s, i]]
                    v = v[:k] if equalize else v
                    assert st["n"][t, i] == len(v)
                    assert st["median"][t, i] == pytest.approx(np.median(v), abs=1e-12)
                    assert st["var"][t, i] == pytest.approx(np.var(v), abs=1e-9)


def test_lira_equal_shadow_counts_remove_the_balanced_design_bias():
    # No membership signal in a balanced design (each example IN for 4 of 8 replicas): a member
    # target leaves 3 IN and 4 OUT shadows, a non-member 4 and 3, which alone pushes online
    # LiRA's AUC to 0.42 (measured over 6 seeds: 0.421-0.428; 0.483 with 16 replicas). Equal
    # counts (the reference's) put it at chance (0.500-0.506; null standard error 0.0032).
    r, n = 8, 4000
    n1 = n2 = r * n // 2
    tol = 4 * np.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    members = balanced_subsets(n, n // 2, r, seed=1)
    conf = np.random.default_rng(1).normal(size=(r, n))
    fair = lira_scores(conf, members, online=True, fixed_variance=False)
    biased = lira_scores(conf, members, online=True, fixed_variance=False, equalize=False)
    assert abs(roc_auc(fair, members) - 0.5) < tol
    assert roc_auc(biased, members) < 0.45


def test_logit_scaled_confidence_is_the_reference_formula_without_its_saturation():
    # score.py: log(p_y + 1e-45) - log(sum_{y' != y} p_y' + 1e-45) in float64 after a max shift.
    # memlab computes log p_y - logsumexp(log p_others) from float32 log-probabilities: the same
    # value, but no 1e-45 floor, so a margin of 200 is 200, not log(1 / 1e-45) = 103.6.
    import torch

    from memlab.engine.evaluate import example_outputs

    logits = np.array([[[10.0, 0.0, -5.0], [0.0, 1.0, 2.0], [200.0, 0.0, 0.0]]])
    y = np.array([0, 0, 0])
    out = example_outputs(torch.log_softmax(torch.tensor(logits, dtype=torch.float32), -1), y)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = np.log(p[..., 0] + 1e-45) - np.log(p[..., 1:].sum(-1) + 1e-45)
    np.testing.assert_allclose(out["confidence"][0, :2], ref[0, :2], rtol=1e-6)
    assert out["confidence"][0, 0] == pytest.approx(10 - np.log1p(np.exp(-5.0)), rel=1e-6)
    assert ref[0, 2] == pytest.approx(-np.log(1e-45))  # the reference saturates ...
    assert out["confidence"][0, 2] == pytest.approx(200 - np.log(2), rel=1e-6)  # ... memlab not


def test_logits_are_taken_in_evaluation_mode():
    # Dropout off when evaluating (memlab's models have no batch statistics): two calls agree
    # and equal the same weights without dropout, even from a model left in training mode.
    import torch

    from memlab.engine.evaluate import network_log_proba
    from memlab.engine.models import StackedMLP

    kw = {"width": 32, "depth": 2, "replica_seeds": [1, 2]}
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    model = StackedMLP(8, 3, dropout=0.5, **kw)
    plain = StackedMLP(8, 3, dropout=0.0, **kw)
    model.train()
    with torch.no_grad():
        a, b = model(torch.from_numpy(x)), model(torch.from_numpy(x))
    assert not torch.equal(a, b)  # dropout is live in training mode
    first = network_log_proba(model)(x)
    assert torch.equal(first, network_log_proba(model)(x))
    assert torch.equal(first, network_log_proba(plain)(x))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_attack_names_of_every_lira_variant():
    members = balanced_subsets(40, 20, 4, seed=1)
    conf = np.random.default_rng(1).normal(size=members.shape)
    names = set(attack_scores(conf > 0, -conf, conf, members))
    assert {
        f"lira_{v}{f}"
        for v in ("online", "offline", "offline_density")
        for f in ("", "_fixed_variance")
    } | {"lira_online_pooled_variance"} <= names


# The reference code, transcribed from tensorflow/privacy research/mi_lira_2021/plot.py
# (generate_ours, generate_ours_offline) with scores [models, examples, queries]; sweep() ranks by
# minus the prediction, so memlab's score (higher = member) is minus it.
def _ref_online(keep, scores, check_keep, check_scores, fix_variance=False):
    dat_in, dat_out = [], []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    in_size = min(map(len, dat_in))
    out_size = min(map(len, dat_out))
    dat_in = np.array([x[:in_size] for x in dat_in])
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_in = np.median(dat_in, 1)
    mean_out = np.median(dat_out, 1)
    if fix_variance:
        std_in = np.std(dat_in)
        std_out = np.std(dat_in)
    else:
        std_in = np.std(dat_in, 1)
        std_out = np.std(dat_out, 1)
    prediction = []
    for sc in check_scores:
        pr_in = -norm.logpdf(sc, mean_in, std_in + 1e-30)
        pr_out = -norm.logpdf(sc, mean_out, std_out + 1e-30)
        prediction.extend((pr_in - pr_out).mean(1))
    return np.array(prediction)


def _ref_offline(keep, scores, check_keep, check_scores, fix_variance=False):
    dat_out = [scores[~keep[:, j], j, :] for j in range(scores.shape[1])]
    out_size = min(map(len, dat_out))
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_out = np.median(dat_out, 1)
    std_out = np.std(dat_out) if fix_variance else np.std(dat_out, 1)
    prediction = []
    for sc in check_scores:
        prediction.extend(norm.logpdf(sc, mean_out, std_out + 1e-30).mean(1))
    return np.array(prediction)


def _sparse_design(r: int = 64, n: int = 100, seed: int = 0) -> np.ndarray:
    """Issue 26's case: every example in only 2 to 4 of 64 replicas. The last replica (the
    reference's target) is in an example of 2 and out of one of 4, so the reference's counts
    (1 IN, 59 OUT) equal memlab's equal counts."""
    rng = np.random.default_rng(seed)
    members = np.zeros((r, n), bool)
    for i, k in enumerate(rng.integers(2, 5, n)):
        members[rng.choice(r, k, replace=False), i] = True
    members[:, :2] = False
    members[[0, r - 1], 0] = True
    members[:4, 1] = True
    return members


def _reference_bank(members: np.ndarray, seed: int) -> np.ndarray:
    # IN and OUT spreads differ (0.5 vs 2), so using one side's spread for the other changes
    # every score; example centres spread too (sd 3), so global and pooled spreads differ.
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, 3, members.shape[1])
    return centre + np.where(
        members, 2 + rng.normal(0, 0.5, members.shape), rng.normal(0, 2, members.shape)
    )


@pytest.mark.parametrize("design", ["balanced", "sparse"])
def test_lira_matches_a_transcription_of_the_reference_code(design):
    members = balanced_subsets(200, 100, 12, seed=2) if design == "balanced" else _sparse_design()
    conf = _reference_bank(members, seed=3)
    q = conf[:, :, None]  # one query per example
    args = (members[:-1], q[:-1], members[-1:], q[-1:])  # do_plot: the last model is the target
    scores = attack_scores(conf > 0, -conf, conf, members)
    ref_fixed = -_ref_online(*args, fix_variance=True)
    np.testing.assert_allclose(scores["lira_online_fixed_variance"][-1], ref_fixed, atol=1e-9)
    # memlab's own fixed variance (each side's pooled spread) is not the reference's ...
    own = scores["lira_online_pooled_variance"][-1]
    assert np.isnan(own).all() if design == "sparse" else np.abs(own - ref_fixed).max() > 0.1
    # ... and neither is the IN/OUT swap (OUT's global spread for both Gaussians).
    swapped = lira_scores(
        conf, ~members, online=True, fixed_variance=True, fixed_estimate="reference"
    )
    assert np.abs(-swapped[-1] - ref_fixed).max() > 0.1
    if design == "balanced":  # per-example spreads from 1 shadow differ by the variance floor
        np.testing.assert_allclose(scores["lira_online"][-1], -_ref_online(*args), atol=1e-9)
        np.testing.assert_allclose(
            scores["lira_offline_density"][-1], -_ref_offline(*args), atol=1e-9
        )
    glob = lira_scores(
        conf,
        members,
        online=False,
        fixed_variance=True,
        offline_test="density",
        fixed_estimate="reference",
    )
    np.testing.assert_allclose(glob[-1], -_ref_offline(*args, fix_variance=True), atol=1e-9)


def test_degenerate_lira_says_so_instead_of_reading_as_chance():
    # Issue 26 (b): 64 replicas, every example in 2 to 4, members' confidence raised by 2. With
    # equal counts each (target, example) has 1 IN shadow: a per-example or pooled IN variance
    # from one value is undefined, so those attacks give no numbers and say why (they read AUC
    # 0.500, TPR 0 and "ok" before); the reference's global IN spread is defined (the reference
    # code reads AUC 0.77 on such a bank) but rests on 1 IN shadow per example: underpowered.
    from conftest import run_columns

    from memlab.analysis.metrics import membership_tables
    from memlab.reporting import figures
    from memlab.reporting.tables import StudyTables

    members = _sparse_design(seed=4)
    r, n = members.shape
    rng = np.random.default_rng(4)
    conf = rng.normal(0, 1, (r, n)) + 2.0 * members
    bank = {
        "train_mask": members,
        "pool_correct": conf > 0,
        "pool_label": np.zeros(n, np.int16),
        "pool_loss": np.log1p(np.exp(-conf)),
        "pool_confidence": conf,
        "test_loss": rng.random((r, 20)),
    }
    run = run_columns()
    res, roc, sliced = membership_tables([(run, bank)])
    by = res.set_index("attack")
    for attack in ("lira_online", "lira_online_pooled_variance"):
        row = by.loc[attack]
        assert row["status"].startswith(f"degenerate: {attack}'s ") and "1 shadow" in row["status"]
        assert not row["powered"] and row[["auc", "advantage", "tpr_at_0.01_fpr"]].isna().all()
        assert attack not in set(roc["attack"])
        assert sliced.loc[sliced["attack"] == attack, "auc"].isna().all()
    ref = by.loc["lira_online_fixed_variance"]
    assert ref["status"].startswith("underpowered: lira_online_fixed_variance fits 1 IN and 59 OUT")
    assert not ref["powered"] and ref["auc"] > 0.7
    # Offline attacks fit 59 OUT shadows per (target, example): results.
    for attack in ("lira_offline", "lira_offline_density_fixed_variance", "rmia_offline"):
        assert by.loc[attack, "status"] == "ok" and by.loc[attack, "auc"] > 0.7
    # The figure draws the run (its offline attacks pass) but only the attacks that pass.
    tables = StudyTables(pd.DataFrame(), pd.DataFrame(), membership=res, membership_roc=roc)
    fig = figures.membership_roc(tables)
    drawn = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert set(by.index[by["powered"]]) == drawn - {"attack"}


# ------------------------------------------------------------------------------- slices


def test_membership_slices_find_members_only_where_they_stand_out():
    # Members are detectable only on flipped examples (their confidence is raised by 4 when a
    # replica trained on them); on clean examples confidence and loss are pure noise.
    from memlab.analysis.metrics import membership_tables
    from memlab.plan.study import RUN_COLUMNS, RUN_KEYS

    rng = np.random.default_rng(5)
    r, n = 16, 400
    members = balanced_subsets(n, n // 2, r, seed=5)
    flipped = np.arange(n) < 100
    conf = rng.normal(size=(r, n)) + 4.0 * (members & flipped)
    loss = np.log1p(np.exp(-conf))
    label = np.arange(n) % 4
    a = {
        "train_mask": members,
        "pool_correct": conf > 0,
        "pool_loss": loss,
        "pool_confidence": conf,
        "test_loss": np.log1p(np.exp(-rng.normal(size=(r, 50)))),
        "flipped": flipped,
        "pool_label": label,
    }
    run = dict.fromkeys(RUN_COLUMNS, 0) | {"dataset": "toy", "model": "m", "regime": "g"}
    # Memorization scores: the flipped examples are the top quartile.
    mem = pd.DataFrame({"example": np.arange(n), "score": np.where(flipped, 0.9, 0.0)})
    mem["score"] += np.linspace(0, 0.01, n)
    mem = mem.assign(**{k: run[k] for k in RUN_KEYS})
    overall, _, sl = membership_tables([(run, a)], mem)
    assert list(sl.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS)
    assert set(sl["slice_by"]) == {"label", "class", "memorization_quantile"}
    auc = sl.set_index(["attack", "slice_by", "slice"])["auc"]
    for attack in ("lira_online", "lira_offline", "loss"):
        assert auc[attack, "label", "flipped"] > 0.95
        assert abs(auc[attack, "label", "clean"] - 0.5) < 0.05
        assert auc[attack, "memorization_quantile", "q4"] > 0.95
        assert abs(auc[attack, "memorization_quantile", "q1"] - 0.5) < 0.05
    # Every slice's pairs add up to the whole pool's.
    counts = sl[sl["attack"] == "loss"].groupby("slice_by")[["members", "non_members"]].sum()
    whole = overall.set_index("attack").loc["loss", ["members", "non_members"]]
    assert (counts == whole.to_numpy()).all().all()
    assert sorted(sl.loc[sl["slice_by"] == "class", "slice"].unique()) == ["0", "1", "2", "3"]
    # A run without memorization scores has no quantile slices.
    _, _, sl2 = membership_tables([(run, a)])
    assert "memorization_quantile" not in set(sl2["slice_by"])


def _log_mean_others_loop(logp, mask):
    """The definition, one target at a time (scipy's logsumexp)."""
    from scipy.special import logsumexp

    mask = np.broadcast_to(mask, logp.shape)
    out = np.full(logp.shape, np.nan)
    for t in range(logp.shape[0]):
        m = mask.copy()
        m[t] = False
        for i in range(logp.shape[1]):
            if m[:, i].any():
                out[t, i] = logsumexp(logp[m[:, i], i]) - np.log(m[:, i].sum())
    return out


def test_log_mean_over_other_replicas_equals_the_definition():
    from memlab.analysis.membership import _log_mean_others

    rng = np.random.default_rng(9)
    logp = -rng.exponential(2.0, (7, 40))
    logp[:, :5] *= 400  # far apart: naive sums would underflow
    logp[0, 5] = logp[1, 5] = 0.0  # ties at the largest
    mask = rng.random((7, 40)) < 0.6
    mask[:, 6] = False  # no references
    mask[:, 7] = False
    mask[2, 7] = True  # one: none for itself
    for m in (mask, np.ones_like(mask)):
        got, count = _log_mean_others(logp, m)
        np.testing.assert_allclose(got, _log_mean_others_loop(logp, m), rtol=1e-12, atol=1e-9)
        assert (count == m.sum(0) - m).all()
