"""The MaxiDOM chunk protocol offline, in seconds: the service's model mirrored in numpy on cached vectors.

    python3 scripts/maxidom/offline_dev.py [--data ../shared/data/mouse-dev] [--users]
    python3 scripts/maxidom/offline_dev.py --weights equal,sqrt-points:clip3 [--users]
    python3 scripts/maxidom/offline_dev.py --variant robust,pmd+redund-groups [--users] [--seed N]

Same data, converter, splits and chunks as `eval_dev.py --protocol chunks` (it imports them; chunks are cut with
the same seed, so they are the same payloads), and the same model as `crates/biometrics/src/model.rs`: per
profile the mouse input (sign·ln(1+|x|) of contract features 1-10, the rich vector's angle, click-timing and
turn-quantile groups, mirrored by `ablation_dev.rich_groups`), median/IQR scaling (then, in the shipped model,
the column weights of model.rs `column_weights`: `pmd+redund-groups` here), mean Minkowski-p distance to
the k = √n/2 nearest training payloads, conformal p-value against the leave-one-out distances with the
exponential tail, and a profile's run combined by the correlation-corrected Stouffer sum of
`crates/biometrics/src/sequential.rs` (window 10, ρ 0.15, past z floored at -3). Training rows follow the
service's growth schedule (trained at 30, 37, 46, 57, 71, 88, 110, … payloads, then every 150, on the newest 300). It differs from the
service only in what the service does over time (the feedback loop's pool), so its numbers sit within ~0.005 AUC
of `eval_dev.py`'s. The first run extracts and caches every payload's vectors (a few minutes); later runs take
seconds per variant. Use it to try an idea; measure the winner through the API with `eval_dev.py`.

`--weights` compares ways of weighting a run's payloads in its Stouffer sum on the shipped model (the p-values
are computed once and shared), with the genuine payloads' share of run scores below 0.05 / 0.01 and a moment
estimate of the owner's within-run correlation of z as the weighted sum sees it (pooled, and the range leaving
each user out). The service ships `sqrt-points:clip3` (`sequential::payload_weight`).

`--variant` compares input scalings of the shipped model (size calibration, p = 1/4, runs weighted as shipped) in
one run: `robust` (median/IQR, the model before the column weights), `rank` / `rank-tail` (per-column empirical
CDF then probit), `robust+lw` / `robust+oas` / `rank+lw` (ZCA whitening with a shrunk covariance), `pmd`
(dispersion in the metric's units), `robust-groups` / `pmd-groups` (equal weight per column group),
`redund` / `redund-sqrt` / `redund-groups` (Spearman redundancy per column or per group) and `pmd+redund-groups`
(shipped); `+local` divides the k-NN distance by the neighbours' own, `@nbS` restricts neighbours to the S share of
training rows nearest in size. See ARCHITECTURE.md for what each gave.

Small-training-set options (`w` is the shipped `pmd+redund-groups` scaling re-implemented with options; each
option follows a `~`, e.g. `w~wshrink=eb~k=sqrt`; `--no-full` skips the full-size model, `--curve` sets the sizes):
  model:        `k=N|sqrt|all|fracF` (neighbours), `lbo=B` (leave-block-out calibration: a training row's
                distance leaves out the rows within ±B of it), `trim=T` (drop each pair's T largest column terms),
                `rho=R` (the run's ρ), `groups=angle+click+…` (input groups after features 1–10)
  weights:      `scale=iqr|mad|hd` (base scale; cancels under the dispersion weights), `noweights`, `nodisp`,
                `noredund`, `rdebias` (Σ r² minus its null expectation 1/(n-1)), `wshrink=N0` (w → w^(n/(n+N0))),
                `wshrink=eb` (empirical-Bayes shrinkage of the log weights toward 0, block-jackknife variances),
                `disp=halves|lagF|ratio` (dispersion over time-separated pairs)
  training set (diagnostics for the curve; the model is unchanged): `spread=1` (N payloads spread evenly over
                all enrolment sessions), `sess=S` (the first N/S of each of the first S sessions), `sessoff=K` (N
                from the start of enrolment session K), `offset=O` (N contiguous from payload O), `grow=R` (the
                service's view: the model of the profile's last growth training when it holds N payloads, the
                growth step R × the last training's count; R = 0.25 is lifecycle::growth_due, R = 1 its earlier doubling)
(helper session H1, 2026-12-07: see the report for what each gave at 20/30/50 payloads.)
"""

import argparse
import functools
import math
import os
import pickle
import random
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.stats import norm, rankdata

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ablation_dev import rich_groups  # noqa: E402
from eval_dev import load_sessions, metrics, split  # noqa: E402
from features import features as contract_features  # noqa: E402


def one(p):
    return contract_features(p), rich_groups(p), sum(len(x) for x in p["mousePaths"])


def load(data, cache):
    path = cache / "vectors.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    sessions = load_sessions(data, cache, set())
    with Pool(2) as pool:
        out = {u: [pool.map(one, ps, chunksize=16) for _, ps in ss] for u, ss in sessions.items()}
    path.write_bytes(pickle.dumps(out))
    return out


def cut(test, rng, max_len=10):
    """eval_dev.cut_chunks' cut (same random calls), on vectors."""
    out = []
    for ps in test:
        i = 0
        while i < len(ps):
            n = rng.randint(1, max_len)
            out.append(ps[i:i + n])
            i += n
    return out


def last_growth(n, ratio=0.25):
    """Payload count of the service's last training for a profile that received n (lifecycle::growth_due: step =
    ¼ of the last training's count, at least 1, at most 150). `ratio`: another schedule, step = ratio × the last
    count (the `~grow=R` option; 1 = doubling, the service's rule before session 10)."""
    g, best = 30, 0
    while g <= n:
        best, g = g, g + min(max(1, int(g * ratio)), 150)
    return best


def vec(r, groups):
    v = [math.copysign(math.log1p(abs(x)), x) for x in r[0][:10]]
    for g in groups:
        v += r[1][g]
    return v


def size_window(sizes, s, m):
    """model.rs `size_window`: the m training rows nearest in ln size, as [lo, hi) over `sizes` (ascending)."""
    n = len(sizes)
    m = min(m, n)
    lo = hi = int(np.searchsorted(sizes, s, "left"))
    while hi - lo < m:
        if lo > 0 and (hi == n or s - sizes[lo - 1] <= sizes[hi] - s):
            lo -= 1
        else:
            hi += 1
    return lo, hi


def calibrate(loo):
    """Sorted leave-out distances, ln of the largest and the tail scale (model.rs `Calibration`)."""
    loo = np.sort(loo)
    n = len(loo)
    top = np.log(np.maximum(loo[int(n * 0.8):], 1e-12))
    tail = max(float(np.mean(top - top[0])), 1e-3) if len(top) > 1 else 0.1
    return loo, math.log(max(loo[-1], 1e-12)), tail


def p_value(c, d):
    loo, lmax, tail = c
    n = len(loo)
    ld = math.log(max(d, 1e-12))
    if ld > lmax:
        return math.exp(-(ld - lmax) / tail) / (n + 1)
    return (n - np.searchsorted(loo, d, "left") + 1) / (n + 1)


def robust_scaler(train):
    """The shipped input scaling: centre on the owner's median, divide by IQR / 1.349 (std, then 1, as fallbacks)."""
    med = np.median(train, 0)
    iqr = np.quantile(train, 0.75, 0) - np.quantile(train, 0.25, 0)
    sd = train.std(0)
    scale = np.where(iqr > 1e-9, iqr / 1.349, np.where(sd > 1e-9, sd, 1.0))
    return lambda x: (x - med) / scale


def rank_scaler(train, tail=False):
    """Copula scaling: each column through the owner's empirical CDF (mid-ranks, u = (#below + #at most + 1) /
    (2 (n + 1)), so training values get (i + 1)/(n + 1) and values beyond the range 0.5/(n + 1) or
    (n + 0.5)/(n + 1)), then the probit. With `tail`, a value beyond the owner's range continues linearly from the
    extreme's probit at the robust scale (the ECDF says nothing out there; without it every value beyond the
    range maps to the same point)."""
    s = np.sort(train, 0)
    n, c = s.shape
    rob = robust_scaler(train)
    lo_z, hi_z = norm.ppf(0.5 / (n + 1)), norm.ppf((n + 0.5) / (n + 1))

    def f(x):
        out = np.empty_like(x, dtype=float)
        for j in range(c):
            less = np.searchsorted(s[:, j], x[:, j], "left")
            le = np.searchsorted(s[:, j], x[:, j], "right")
            out[:, j] = norm.ppf((less + le + 1) / (2 * (n + 1)))
        if tail:
            r = rob(x)
            rmin, rmax = rob(s[:1])[0], rob(s[-1:])[0]
            out = np.where(x < s[0], lo_z + (r - rmin), out)
            out = np.where(x > s[-1], hi_z + (r - rmax), out)
        return out

    return f


def whitened(base, shrink="lw"):
    """`base` scaling, then ZCA whitening with the owner's shrunk covariance (Ledoit-Wolf or OAS) of the scaled
    training rows: correlated columns no longer count several times in the distance."""
    from sklearn.covariance import OAS, LedoitWolf

    def fit(train):
        f = base(train)
        z = f(train)
        est = (LedoitWolf() if shrink == "lw" else OAS()).fit(z)
        w, v = np.linalg.eigh(est.covariance_)
        m = est.location_
        W = v @ np.diag(1 / np.sqrt(np.maximum(w, 1e-12))) @ v.T
        return lambda x: (f(x) - m) @ W

    return fit


# The mouse input's column groups by input width (model.rs `MouseInput`): contract features 1-10; + the angle and
# click-timing groups; + the turn quantiles.
MOUSE_GROUPS = {10: [10], 20: [10, 5, 5], 23: [10, 5, 5, 3]}


def dispersion_rows(z, max_rows=256):
    """The rows whose pairs estimate the dispersion weights (model.rs `DISPERSION_MAX_ROWS`): all up to 256, else
    256 spread evenly (row t·n/256)."""
    n = len(z)
    m = min(n, max_rows)
    return z[(np.arange(m) * n) // m]


def pmd_scaler(train, p=0.25, groups=None, per_column=True):
    """Each column scaled by its dispersion in the metric's own units: the owner's mean over training pairs of
    |x_i - x_k|^p, to the power 1/p, so every column contributes equally (in expectation, under the owner) to the
    fractional distance whatever its shape (ties, bimodality, heavy tails), which IQR scaling only ensures for
    Gaussian columns. With `groups` (column counts), a second step makes each group's expected contribution equal
    instead (a group of 10 columns no longer weighs twice a group of 5)."""
    n, c = train.shape
    if groups == "auto":
        groups = MOUSE_GROUPS[c]
    rob = robust_scaler(train)
    z = rob(train)
    zs = dispersion_rows(z)
    iu = np.triu_indices(len(zs), 1)
    disp = np.empty(c)
    for j in range(c):
        dj = np.abs(zs[:, j][:, None] - zs[:, j][None, :])[iu] ** p
        disp[j] = dj.mean()
    # A column constant for the owner keeps weight 1 (its dispersion says nothing to equalise).
    # Bounded to [1/4, 4] (model.rs `MAX_COLUMN_WEIGHT`): a column the owner almost never varies would otherwise
    # weigh without limit; never reached on the dev data's 300-row models (0.89-1.46).
    w = np.where(disp > 1e-9, np.clip(1 / np.maximum(disp, 1e-12), 0.25, 4.0), 1.0) if per_column else np.ones(c)
    if groups:
        start = 0
        for g in groups:
            w[start:start + g] *= (c / len(groups)) / g
            start += g
    sc = w ** (1 / p)
    return lambda x: rob(x) * sc


def redundancy_scaler(train, p=0.25, groups=None, power=1.0, base=robust_scaler):
    """Robust scaling, then each column's contribution to the fractional distance divided by its redundancy among
    the owner's training rows: Σ_k r_jk² over all columns k (Spearman r, r_jj = 1), the number of columns it
    effectively duplicates (1 for a column uncorrelated with the rest). A diagonal answer to "correlated columns
    count several times" that does not invert a covariance (whitening amplifies the owner's low-variance,
    noisy directions). With `groups`, the effective count is computed per group: the group's participation
    ratio (Σλ)²/Σλ² of its correlation matrix, shared by its columns."""
    n, c = train.shape
    rob = base(train)
    if groups == "auto":
        groups = MOUSE_GROUPS[c]
    rk = rankdata(train, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(rk.T)
    r = np.nan_to_num(r, nan=0.0)
    np.fill_diagonal(r, 1.0)
    if groups:
        w = np.empty(c)
        start = 0
        for g in groups:
            lam = np.linalg.eigvalsh(r[start:start + g, start:start + g])
            w[start:start + g] = (lam.sum() ** 2 / (lam ** 2).sum()) / g
            start += g
    else:
        w = 1 / (r ** 2).sum(1)
    sc = (w ** power) ** (1 / p)
    return lambda x: rob(x) * sc


def hd_quantile(x, q):
    """Harrell-Davis quantile estimate per column (a Beta-weighted mean of the order statistics)."""
    from scipy.stats import beta
    n = x.shape[0]
    a, b = (n + 1) * q, (n + 1) * (1 - q)
    edges = beta.cdf(np.arange(n + 1) / n, a, b)
    w = np.diff(edges)
    return w @ np.sort(x, 0)


def weighted_scaler(train, opts=None):
    """The shipped `pmd+redund-groups` scaling with small-sample options (`~` options of a variant):
    `scale=iqr|mad|hd` (the base scale: IQR/1.349, 1.4826·MAD, Harrell-Davis IQR/1.349), `rdebias` (the group's
    Σ r² counts only the correlation beyond what n rows of independent columns show, E[r²] = 1/(n-1)),
    `wshrink=N0` (each column's final weight w → w^(n/(n+N0)), shrinking the estimated weights toward 1 by an
    amount that vanishes with n), `noweights` (median/scale only)."""
    opts = opts or {}
    n, c = train.shape
    p = 0.25
    med = np.median(train, 0)
    how = opts.get("scale", "iqr")
    if how == "mad":
        spread = 1.4826 * np.median(np.abs(train - med), 0)
    elif how == "hd":
        spread = (hd_quantile(train, 0.75) - hd_quantile(train, 0.25)) / 1.349
    else:
        spread = (np.quantile(train, 0.75, 0) - np.quantile(train, 0.25, 0)) / 1.349
    sd = train.std(0)
    scale = np.where(spread > 1e-9, spread, np.where(sd > 1e-9, sd, 1.0))
    z = (train - med) / scale
    if "noweights" in opts:
        return lambda x: (x - med) / scale
    groups = list(opts["_gw"]) if "_gw" in opts else MOUSE_GROUPS[c]
    iu = np.triu_indices(n, 1)
    if opts.get("disp") == "halves":
        # Dispersion over the pairs that are farthest apart in time: one payload from the first half of the
        # training rows (in enrolment order), one from the second half.
        h = n // 2
        disp = np.array([(np.abs(z[:h, j][:, None] - z[h:, j][None, :]) ** p).mean() for j in range(c)])
    elif opts.get("disp", "").startswith("lag"):
        # Dispersion over the pairs at least L rows apart (L = n·frac).
        L = max(1, int(round(n * float(opts["disp"][3:]))))
        ii, kk = iu
        far = (kk - ii) >= L
        disp = np.array([(np.abs(z[ii[far], j] - z[kk[far], j]) ** p).mean() for j in range(c)])
    elif opts.get("disp") == "ratio":
        # Stationarity: all-pairs dispersion times the ratio of far (other half) to near (|i-k| ≤ 2) dispersion.
        ii, kk = iu
        near = (kk - ii) <= 2
        h = n // 2
        allp = np.array([(np.abs(z[:, j][:, None] - z[:, j][None, :])[iu] ** p).mean() for j in range(c)])
        farp = np.array([(np.abs(z[:h, j][:, None] - z[h:, j][None, :]) ** p).mean() for j in range(c)])
        nearp = np.array([(np.abs(z[ii[near], j] - z[kk[near], j]) ** p).mean() for j in range(c)])
        disp = allp * np.maximum(farp / np.maximum(nearp, 1e-12), 1.0)
    else:
        zs = dispersion_rows(z)
        ius = np.triu_indices(len(zs), 1)
        disp = np.array([(np.abs(zs[:, j][:, None] - zs[:, j][None, :])[ius] ** p).mean() for j in range(c)])
    w = np.where(disp > 1e-9, np.clip(1 / np.maximum(disp, 1e-12), 0.25, 4.0), 1.0)
    if "nodisp" in opts:
        w = np.ones(c)
    rk = rankdata(train, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(rk.T)
    r = np.nan_to_num(r, nan=0.0)
    np.fill_diagonal(r, 1.0)
    r2 = r ** 2
    if "rdebias" in opts:
        off = ~np.eye(c, dtype=bool)
        r2 = np.where(off, np.maximum(r2 - 1.0 / (n - 1), 0.0), 1.0)
    start = 0
    if "noredund" not in opts:
        for g in groups:
            blk = r2[start:start + g, start:start + g]
            w[start:start + g] *= (g * g / blk.sum()) / g
            start += g
    if opts.get("wshrink") == "eb":
        # Empirical Bayes (James-Stein) shrinkage of the log weights toward 0 (weight 1): each column's sampling
        # variance s_j² from a block jackknife (G contiguous blocks of training rows, so the rows' serial dependence
        # counts), the spread of the true log weights τ² = mean θ² − mean s² (method of moments), and
        # θ_j → θ_j τ² / (τ² + s_j²).
        sub = dict(opts)
        sub.pop("wshrink")
        G = min(n, 10)
        edges = np.linspace(0, n, G + 1).astype(int)
        th = np.log(w)
        reps = []
        for g in range(G):
            keep = np.r_[0:edges[g], edges[g + 1]:n]
            reps.append(np.log(column_weights_of(train[keep], sub)))
        reps = np.array(reps)
        s2 = (G - 1) / G * ((reps - reps.mean(0)) ** 2).sum(0)
        tau2 = max(0.0, float(np.mean(th ** 2) - np.mean(s2)))
        w = np.exp(th * tau2 / (tau2 + s2 + 1e-12))
    elif "wshrink" in opts:
        n0 = float(opts["wshrink"])
        w = w ** (n / (n + n0))
    if opts.get("_weights_only"):
        return w
    sc = w ** (1 / p)
    return lambda x: (x - med) / scale * sc


def column_weights_of(train, opts):
    return weighted_scaler(train, {**opts, "_weights_only": 1})


OPT_PREPS = {"w"}

PREPS = {
    "w": weighted_scaler,
    "redund": redundancy_scaler,
    "redund-sqrt": functools.partial(redundancy_scaler, power=0.5),
    "redund-groups": functools.partial(redundancy_scaler, groups=[10, 5, 5, 3]),
    "pmd+redund-groups": functools.partial(redundancy_scaler, groups="auto", base=pmd_scaler),
    "pmd": pmd_scaler,
    "pmd-groups": functools.partial(pmd_scaler, groups=[10, 5, 5, 3]),
    "robust-groups": functools.partial(pmd_scaler, groups=[10, 5, 5, 3], per_column=False),
    "robust": robust_scaler,
    "rank": rank_scaler,
    "rank-tail": functools.partial(rank_scaler, tail=True),
    "robust+lw": whitened(robust_scaler, "lw"),
    "robust+oas": whitened(robust_scaler, "oas"),
    "rank+lw": whitened(rank_scaler, "lw"),
    "rank-tail+lw": whitened(functools.partial(rank_scaler, tail=True), "lw"),
}


def k_rule(spec, n):
    """Number of neighbours for n training rows: the shipped √n/2 (1-10), or a variant (`~k=` option): an
    integer, `sqrt` (√n), `all` (every row: mean distance to the whole training set)."""
    if spec is None:
        return int(min(10, max(1, round(math.sqrt(n) / 2))))
    if spec == "sqrt":
        return int(min(n - 1, max(1, round(math.sqrt(n)))))
    if spec == "all":
        return n - 1
    if spec.startswith("frac"):
        return int(min(n - 1, max(1, round(n * float(spec[4:])))))
    return min(int(spec), n - 1)


def knn(train, p, sizes=None, share=0.5, min_window=30, prep="robust", local=False, nb_share=None, opts=None):
    """The service's k-NN model. With `sizes` (mouse points of each training row), a payload is calibrated
    against the leave-one-out distances of the max(min_window, share·n) training rows nearest to it in
    ln(1 + points) (size-conditional calibration); without, against all of them. `prep` names the input
    scaling (`PREPS`; the service: "robust"). `local`: the distance is divided by the mean leave-one-out distance
    of the k neighbours (a local-density ratio, as LOF: regions where the owner's payloads are sparse forgive more)."""
    opts = opts or {}
    f = PREPS[prep](train, **({"opts": opts} if prep in OPT_PREPS else {}))
    z = f(train)
    n = len(z)
    k = k_rule(opts.get("k"), n)

    trim = int(opts.get("trim", 0))

    def kd(x):
        fx = f(x)
        if trim:
            # Trimmed distance: the `trim` largest per-column terms of each pair are left out (a few columns that
            # moved between sessions do not decide the distance). In blocks, to bound memory.
            out = np.empty((len(fx), n))
            for a in range(0, len(fx), 256):
                t = np.abs(fx[a:a + 256, None, :] - z[None, :, :]) ** p
                t = np.partition(t, t.shape[-1] - trim - 1, axis=-1)[..., :t.shape[-1] - trim]
                out[a:a + 256] = t.sum(-1) ** (1 / p)
            return out
        d = (np.abs(fx[:, None, :] - z[None, :, :]) ** p).sum(-1) ** (1 / p)
        return d

    d = kd(train)
    np.fill_diagonal(d, np.inf)
    if "lbo" in opts:
        # Leave-block-out calibration: a training row's distance leaves out the rows within ±b of it in
        # training order (the same stretch of the same session), as a new session's payload has no such neighbour.
        b = int(opts["lbo"])
        idx = np.arange(n)
        d = np.where(np.abs(idx[:, None] - idx[None, :]) <= b, np.inf, d)
    if nb_share is not None and sizes is not None:
        # Size-conditional neighbours: each row's neighbours only among the max(min_window, nb_share·n) training
        # rows nearest to it in ln size (itself included in the count, then left out).
        ls_all = np.log1p(np.asarray(sizes, float))
        o = np.argsort(ls_all, kind="stable")
        mnb = max(min_window, int(n * nb_share))

        def allowed(s):
            lo, hi = size_window(ls_all[o], s, mnb)
            mask = np.zeros(n, bool)
            mask[o[lo:hi]] = True
            return mask

        for i in range(n):
            d[i, ~allowed(ls_all[i])] = np.inf
    loo_rows = np.sort(d, 1)[:, :k].mean(1)
    if local:
        nb = np.argsort(d, 1)[:, :k]
        dens = loo_rows.copy()
        loo_rows = loo_rows / np.maximum(dens[nb].mean(1), 1e-12)
    everything = calibrate(loo_rows)
    if sizes is not None:
        ls = np.log1p(np.asarray(sizes, float))
        order = np.argsort(ls, kind="stable")
        ls, loo_by_size = ls[order], loo_rows[order]
        m = max(min_window, int(n * share))

    def score(x, xs=None):
        dd = kd(x)
        if nb_share is not None and sizes is not None and xs is not None:
            for i, sx in enumerate(np.log1p(np.asarray(xs, float))):
                dd[i, ~allowed(sx)] = np.inf
        dx = np.sort(dd, 1)[:, :k].mean(1)
        if local:
            dx = dx / np.maximum(dens[np.argsort(dd, 1)[:, :k]].mean(1), 1e-12)
        if sizes is None or xs is None:
            return np.array([p_value(everything, v) for v in dx])
        out = []
        for v, s in zip(dx, np.log1p(np.asarray(xs, float))):
            lo, hi = size_window(ls, s, m)
            out.append(p_value(calibrate(loo_by_size[lo:hi]), v))
        return np.array(out)

    return score


def run_scores(ps, ns=None, rho=0.15, window=10, minz=-3.0, weight=None,
               change_share=float(os.environ.get("CP_EPS", "0.1"))):
    """sequential::Run::push over one chunk: per payload the run's score (None: the payload did not vote).

    With a past, the whole run is one test among the newest-k suffixes ending at the payload (k = 1 … m − 1), and
    the score is min(p_run / (1 − ε), (m − 1)/ε · min_k p_k), ε = `change_share` (sequential::CHANGE_SHARE, 0.1;
    the environment's CP_EPS overrides it, 0 = the whole run alone as before 2026-12-07).

    `weight(points)` gives each voting payload's Stouffer weight (None: equal weights); `ns` are the payloads'
    mouse point counts. Weighted Stouffer: Z = Σ w z / √((1 − ρ) Σ w² + ρ (Σ w)²), which is
    Σ w_i z_i / √(Σ w_i² + ρ Σ_{i≠j} w_i w_j) and, with equal weights, the equal-weight formula."""
    ns = ns if ns is not None else [0] * len(ps)
    zs, ws, out = [], [], []

    def comb(z, w):
        sd = math.sqrt((1 - rho) * sum(x * x for x in w) + rho * sum(w) ** 2)
        return norm.cdf(sum(a * b for a, b in zip(z, w)) / sd)

    for p, n in zip(ps, ns):
        if p is None:
            out.append(comb(zs[-window:], ws[-window:]) if zs else 0.5)
            continue
        z = norm.ppf(min(max(p, 1e-300), 1 - 1e-16))
        w = weight(n) if weight else 1.0
        past, pw = zs[-(window - 1):], ws[-(window - 1):]
        eps = change_share
        if past and eps > 0:
            allz, allw = past + [z], pw + [w]
            m = len(allz)
            full = comb(allz, allw)
            # sequential::whole_run_score: p / (1 − ε) up to ½, then linear to 1 (no ties at the top).
            knee = 0.5 / (1 - eps)
            full = full / (1 - eps) if full <= 0.5 else knee + (full - 0.5) * (1 - knee) / 0.5
            suf = min(comb(allz[m - k:], allw[m - k:]) for k in range(1, m)) * (m - 1) / eps
            out.append(min(1.0, full, suf))
        else:
            out.append(comb(past + [z], pw + [w]) if past else p)
        zs.append(max(z, minz))
        ws.append(w)
    return out


# The weighted variants' reference size: a payload of REF_POINTS mouse points weighs 1 (only ratios matter to
# Stouffer; the reference only makes weight 1 mean "a typical payload", as for format-1 run states).
REF_POINTS = 200.0
WEIGHTS = {
    "equal": None,
    "sqrt-points": lambda n: math.sqrt(n / REF_POINTS),
    "points": lambda n: n / REF_POINTS,
    "log-points": lambda n: math.log1p(n) / math.log1p(REF_POINTS),
}


def clipped(f, ratio):
    """f's weight bounded to [1/ratio, ratio] (the reference payload weighs 1)."""
    return lambda n: min(max(f(n), 1 / ratio), ratio)


# Payload p-values per (user, model variant): variants that only change the run combination reuse them.
P_VALUES = {}


def evaluate(vectors, splits, chunks, groups, p, combine=run_scores, n_train=None, sized=False, prep="robust",
             local=False, nb_share=None, opts=None):
    g_pay, i_pay, g_run, i_run, g_last, i_last, per_user = [], [], [], [], [], [], {}
    g_chunks = []
    for u in splits:
        allc = [(v == u, c) for v in splits for c in chunks[v]]
        key = (u, tuple(groups), p, sized, n_train, id(chunks), prep, local, nb_share,
               tuple(sorted((opts or {}).items())))
        if key not in P_VALUES:
            tr = splits[u][0]
            # The curve trains on exactly the first n_train payloads (as eval_dev's seed baseline does).
            if n_train and (opts or {}).get("sess"):
                # Diagnostic: n_train payloads from the first S enrolment sessions, the first n_train/S of each.
                S = int(opts["sess"])
                lens = [len(x) for x in vectors[u]]
                starts = np.cumsum([0] + lens)
                per = -(-n_train // S)
                tr = [r for i in range(S) for r in tr[starts[i]:min(starts[i] + per, starts[i + 1])]][:n_train]
            elif n_train and (opts or {}).get("sessoff"):
                # Diagnostic: the first n_train payloads from the start of enrolment session K (0 = the first).
                o = int(np.cumsum([0] + [len(x) for x in vectors[u]])[int(opts["sessoff"])])
                tr = tr[o:o + n_train]
            elif n_train and (opts or {}).get("offset"):
                # Diagnostic: n_train contiguous payloads starting at the given enrolment payload.
                o = int(opts["offset"])
                tr = tr[o:o + n_train]
            elif n_train and (opts or {}).get("spread"):
                # Diagnostic: n_train payloads spread evenly over all the enrolment payloads (several sessions).
                tr = [tr[int(i)] for i in np.linspace(0, len(tr) - 1, n_train)]
            else:
                grow = float((opts or {}).get("grow", 0.25))
                # With n_train: the profile holds its first n_train payloads and the model is its last growth
                # training's (the service's view) when `~grow=` is given, else exactly the first n_train.
                if n_train and "grow" in (opts or {}):
                    tr = tr[:last_growth(n_train, grow)][-300:]
                else:
                    tr = tr[:n_train] if n_train else tr[:last_growth(len(tr), grow)][-300:]
            rows = [r for r in tr if r[0][0] > 0]
            score = knn(np.array([vec(r, groups) for r in rows]), p, [r[2] for r in rows] if sized else None,
                        prep=prep, local=local, nb_share=nb_share, opts=opts)
            flat = [r for _, c in allc for r in c]
            P_VALUES[key] = score(np.array([vec(r, groups) for r in flat]), [r[2] for r in flat])
        pv = P_VALUES[key]
        pos, ul = 0, ([], [])
        for gen, c in allc:
            ps = [float(pv[pos + j]) if c[j][2] >= 30 else None for j in range(len(c))]
            pos += len(c)
            rs = combine(ps, [r[2] for r in c])
            if gen:
                g_chunks.append((u, ps, [r[2] for r in c]))
            (g_run if gen else i_run).extend(rs)
            (g_last if gen else i_last).append(rs[-1])
            ul[0 if gen else 1].append(rs[-1])
            (g_pay if gen else i_pay).extend(x for x in ps if x is not None)
        per_user[u] = metrics(*ul)
    return {"payload": metrics(g_pay, i_pay), "run": metrics(g_run, i_run), "chunk_last": metrics(g_last, i_last),
            "per_user": per_user, "genuine_below_005": float(np.mean(np.array(g_run) < 0.05)),
            "genuine_below_001": float(np.mean(np.array(g_run) < 0.01)), "genuine_chunks": g_chunks}


def rho_hat(g_chunks, weight=None, users=None):
    """Moment estimate of the owner's within-run correlation of z as the weighted sum sees it: under the
    owner E[(Σ w z)²] = Σ w² + ρ Σ_{i≠j} w_i w_j, so ρ = Σ (S² − Σ w²) / Σ Σ_{i≠j} w_i w_j over genuine chunks
    (windows of ≤ 10 voting payloads, as the run combines; z unfloored)."""
    num = den = 0.0
    for u, ps, ns in g_chunks:
        if users is not None and u not in users:
            continue
        v = [(norm.ppf(min(max(p, 1e-300), 1 - 1e-16)), weight(n) if weight else 1.0)
             for p, n in zip(ps, ns) if p is not None]
        if len(v) < 2:
            continue
        s = sum(z * w for z, w in v)
        sw, sw2 = sum(w for _, w in v), sum(w * w for _, w in v)
        num += s * s - sw2
        den += sw * sw - sw2
    return num / den if den else float("nan")


VARIANTS = [
    ("previous: angles + click timing, p = 1/2", ["angle", "click"], 0.5, False),
    ("+ turn quantiles, p = 1/2", ["angle", "click", "turnq"], 0.5, False),
    ("previous: + turn quantiles, p = 1/4", ["angle", "click", "turnq"], 0.25, False),
    ("previous without turn quantiles (p = 1/4)", ["angle", "click"], 0.25, False),
    ("previous: p = 1/4, size-conditional calibration", ["angle", "click", "turnq"], 0.25, True),
    ("shipped: + column weights (dispersion, redundancy)", ["angle", "click", "turnq"], 0.25, True,
     "pmd+redund-groups"),
]


def parse_weight(spec):
    """'sqrt-points:clip3@0.2' -> (weight function or None, rho)."""
    spec, _, rho = spec.partition("@")
    name, _, clip = spec.partition(":")
    w = WEIGHTS[name]
    if clip:
        w = clipped(w, float(clip.removeprefix("clip")))
    return w, float(rho) if rho else 0.15


def compare_weights(vectors, splits, chunks, specs, users, f):
    """The shipped variant's run combined with each weighting, in one run (same p-values for all)."""
    _, groups, p, sized, prep = VARIANTS[-1]
    sizes = np.array([r[2] for u in splits for c in chunks[u] for r in c if r[2] >= 30])
    print(f"voting payloads' mouse points: n {len(sizes)}, quantiles 5/25/50/75/95/99 %: "
          + " / ".join(f"{np.quantile(sizes, q):.0f}" for q in (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)))
    print("| weights | per payload alone | in its run | chunk (last payload) | genuine run scores < 0.05 / < 0.01 "
          "| owner's within-run ρ of z as weighted, pooled (leaving each user out: range) |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        w, rho = parse_weight(spec)
        r = evaluate(vectors, splits, chunks, groups, p, sized=sized, prep=prep,
                     combine=lambda ps, ns, w=w, rho=rho: run_scores(ps, ns, rho=rho, weight=w))
        m = {k: (r[k]["auc"], r[k]["eer"], r[k]["frr_at_1far"]) for k in ("payload", "run", "chunk_last")}
        users_all = sorted(splits)
        loo = [rho_hat(r["genuine_chunks"], w, set(users_all) - {u}) for u in users_all]
        print(f"| {spec} | {f(m['payload'])} | {f(m['run'])} | {f(m['chunk_last'])} | "
              f"{r['genuine_below_005']:.3f} / {r['genuine_below_001']:.3f} | "
              f"{rho_hat(r['genuine_chunks'], w):.3f} ({min(loo):.3f}–{max(loo):.3f}) |", flush=True)
        if users:
            print("|  per user | " + ", ".join(f"{u} {v['auc']:.3f}" for u, v in r["per_user"].items()) + " | | | | |")


def compare_variants(vectors, splits, chunks, specs, users, f, n_train=None):
    """Input scalings / distance variants of the shipped model (size calibration, p = 1/4, weighted runs), in one
    run; `specs` are PREPS names, optionally with "+local" (local-density ratio) or ":p=0.5"."""
    _, groups, _, sized, _ = VARIANTS[-1]
    w, rho = parse_weight("sqrt-points:clip3")
    print("| variant | per payload alone AUC / EER / FRR@1%FAR | in its run | chunk (last payload) | genuine < 0.05 |")
    print("|---|---|---|---|---|")
    for spec in specs:
        name = spec
        spec, *rest = spec.split("~")
        opts = dict((o.partition("=")[0], o.partition("=")[2]) for o in rest)
        vgroups = groups
        if "groups" in opts:
            # Input groups (contract features 1-10 always): e.g. groups=angle+click, groups=none.
            vgroups = [g for g in opts.pop("groups").split("+") if g and g != "none"]
            sizes_ = {"angle": 5, "click": 5, "turnq": 3, "speed": 5, "speedhist": 6, "dir": 8, "jerk": 4,
                      "stroke": 8, "pos": 4, "sampling": 1}
            opts["_gw"] = (10,) + tuple(sizes_[g] for g in vgroups)
        spec, _, nb = spec.partition("@nb")
        spec, _, pp = spec.partition(":p=")
        local = spec.endswith("+local")
        prep = spec.removesuffix("+local")
        r = evaluate(vectors, splits, chunks, vgroups, float(pp) if pp else 0.25, sized=sized, prep=prep, local=local,
                     nb_share=float(nb) if nb else None, n_train=n_train, opts=opts,
                     combine=lambda ps, ns, rr=float(opts.pop("rho", rho)): run_scores(ps, ns, rho=rr, weight=w))
        m = {k: (r[k]["auc"], r[k]["eer"], r[k]["frr_at_1far"]) for k in ("payload", "run", "chunk_last")}
        label = f"{name} ({n_train} payloads)" if n_train else name
        print(f"| {label} | {f(m['payload'])} | {f(m['run'])} | {f(m['chunk_last'])} | "
              f"{r['genuine_below_005']:.3f} |", flush=True)
        if users:
            print("|  per user | " + ", ".join(f"{u} {v['auc']:.3f}" for u, v in r["per_user"].items()) + " | | | |")
            print("|  per user EER | " + ", ".join(f"{u} {v['eer']:.3f}" for u, v in r["per_user"].items())
                  + " | | | |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/mouse-dev")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "maxidom-dev-payloads"))
    ap.add_argument("--seed", type=int, default=7, help="eval_dev.py's chunk seed")
    ap.add_argument("--users", action="store_true", help="print per-user chunk AUCs")
    ap.add_argument("--curve", default="", help="also: accuracy versus enrolment payloads, e.g. 20,30,50,100,150")
    ap.add_argument("--weights", default="",
                    help="compare run combinations on the shipped variant instead: comma-separated of "
                         + ", ".join(WEIGHTS) + ", each optionally with :clipR (weight ratio to the reference "
                         "payload bounded to [1/R, R]) and @rho (e.g. sqrt-points:clip3@0.2)")
    ap.add_argument("--variant", default="",
                    help="compare input scalings of the shipped model (weighted runs) instead: comma-separated of "
                         + ", ".join(PREPS) + ", each optionally +local and :p=P (e.g. robust,rank,robust+lw)")
    ap.add_argument("--no-full", action="store_true", help="with --variant --curve: only the curve's sizes")
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "training_files").is_dir():
        raise SystemExit(f"{data}/training_files not found (run from the repository root, or pass --data)")
    vectors = load(data, Path(args.cache))
    splits = {}
    for u, sess in vectors.items():
        tr, te = split([(i, s) for i, s in enumerate(sess)])
        splits[u] = (tr, [s for _, s in te])
    rng = random.Random(args.seed)
    chunks = {u: cut(te, rng) for u, (_, te) in splits.items()}
    f = lambda m: f"{m[0]:.3f} / {m[1]:.3f} / {m[2]:.3f}"  # noqa: E731
    if args.variant:
        # With --curve, the same comparison again for models trained on exactly the first N payloads.
        for n in ([] if args.no_full else [None]) + [int(x) for x in args.curve.split(",") if x]:
            compare_variants(vectors, splits, chunks, args.variant.split(","), args.users, f, n_train=n)
        return
    if args.weights:
        compare_weights(vectors, splits, chunks, args.weights.split(","), args.users, f)
        return
    print("| variant | per payload alone AUC / EER / FRR@1%FAR | in its run | chunk (last payload) | genuine < 0.05 |")
    print("|---|---|---|---|---|")
    for name, groups, p, sized, *prep in VARIANTS:
        r = evaluate(vectors, splits, chunks, groups, p, sized=sized, prep=prep[0] if prep else "robust")
        m = {k: (r[k]["auc"], r[k]["eer"], r[k]["frr_at_1far"]) for k in ("payload", "run", "chunk_last")}
        print(f"| {name} | {f(m['payload'])} | {f(m['run'])} | {f(m['chunk_last'])} | {r['genuine_below_005']:.3f} |",
              flush=True)
        if args.users:
            print("|  per user | " + ", ".join(f"{u} {v['auc']:.3f}" for u, v in r["per_user"].items()) + " | | | |")
    curve = [int(x) for x in args.curve.split(",") if x]
    if curve:
        print("\n| payloads | variant | per payload alone | in its run | chunk (last payload) |")
        print("|---|---|---|---|---|")
    for n in curve:
        for name, groups, p, sized, *prep in (VARIANTS[2], VARIANTS[4], VARIANTS[5]):
            r = evaluate(vectors, splits, chunks, groups, p, n_train=n, sized=sized, prep=prep[0] if prep else "robust")
            m = {k: (r[k]["auc"], r[k]["eer"], r[k]["frr_at_1far"]) for k in ("payload", "run", "chunk_last")}
            print(f"| {n} | {name} | {f(m['payload'])} | {f(m['run'])} | {f(m['chunk_last'])} |", flush=True)


if __name__ == "__main__":
    main()
