"""scikit-learn's IsolationForest fitted and scored without its per-tree Python (#17.6).

`fit` returns the forest `IsolationForest(n_estimators, random_state=...).fit(x)` returns, tree
for tree (same random draws, same splits, same node values: the trees are still built by
scikit-learn's own tree builder); `score_samples(forest, x)` equals `forest.score_samples(x)`
bit for bit. tests/detector/test_forest.py checks both against scikit-learn on several shapes.

Where the time went in scikit-learn 1.9 (a 7-day 15 s training: 40,320 rows, 100 trees):
- every tree seeds up to four `np.random.RandomState(seed)`; each constructor first seeds itself
  from the OS (SeedSequence, about 170 us) before the legacy seeding, where reseeding one
  instance (`RandomState.seed`) takes 2 us;
- below 1 % of the rows sampled (more than 25,600 rows) the 256 row indices are drawn with one
  Python `randint` call each; one vectorised draw gives the same stream;
- each tree is fitted on all rows with a 0/1 sample weight (a pass over 40,320 rows for 256);
  fitting the sampled rows in the same (ascending) order builds the same tree;
- parameter validation, `clone` and `get_params` (via `inspect.signature`) per tree;
- scoring: `tree.apply` with its input checks, one joblib dispatch per tree and a lock.
This reads scikit-learn's private forest attributes (`_seeds`, `_decision_path_lengths`, ...),
so it holds for the versions it is tested with (TESTED); with any other scikit-learn both
functions use scikit-learn's own fit and score_samples (slower, the same model), and say so once
in the log. The model's versions() pin the version in every artifact.
"""

from __future__ import annotations

import logging

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.tree import ExtraTreeRegressor
from sklearn.utils.random import sample_without_replacement

logger = logging.getLogger(__name__)

MAX_INT = np.iinfo(np.int32).max  # scikit-learn's bound for the seeds it draws
# sample_without_replacement draws one index at a time (tracking selection) below this share.
TRACKING_RATIO = 0.01
# scikit-learn releases (major.minor) whose internals tests/detector/test_forest.py checked this against.
TESTED = frozenset({"1.9"})


def supported(version: str = sklearn.__version__) -> bool:
    """Whether this scikit-learn's private forest internals are the ones this module was checked with."""
    return ".".join(version.split(".")[:2]) in TESTED


_SUPPORTED = supported()
if not _SUPPORTED:
    logger.warning("scikit-learn %s is not one this detector's fast forest was checked with (%s): "
                   "training and scoring use scikit-learn's own, slower code", sklearn.__version__,
                   ", ".join(sorted(TESTED)))


def fit(x: np.ndarray, n_estimators: int, random_state: int) -> IsolationForest:
    """`IsolationForest(n_estimators=n_estimators, random_state=random_state).fit(x)`, the same forest."""
    if not _SUPPORTED:
        return IsolationForest(n_estimators=n_estimators, random_state=random_state).fit(x)
    # scikit-learn's own fit of the first tree sets every other fitted attribute (the validated
    # input's shape, max_samples_, offset_, estimator_ with its max_depth, ...).
    forest = IsolationForest(n_estimators=1, random_state=random_state).fit(x)
    forest.set_params(n_estimators=n_estimators)
    rows = np.asarray(x, dtype=np.float32)  # the trees' dtype, as fit's validation converts it
    n = len(rows)
    rng = np.random.RandomState(random_state)
    target = rng.uniform(size=n)  # fit's random regression target
    rng.seed(random_state)
    seeds = rng.randint(MAX_INT, size=n_estimators)  # the bagging's per-tree seeds
    params = forest.estimator_.get_params()
    trees, features = [forest.estimators_[0]], [forest.estimators_features_[0]]
    with sklearn.config_context(skip_parameter_validation=True):
        for seed in seeds[1:]:
            rng.seed(seed)
            features.append(sample_without_replacement(rows.shape[1], forest._max_features, random_state=rng))
            sample = np.sort(_sample(n, forest._max_samples, rng))
            rng.seed(seed)
            tree_seed = rng.randint(MAX_INT)  # what _set_random_states gives the tree
            rng.seed(tree_seed)
            tree = ExtraTreeRegressor(**{**params, "random_state": rng})
            tree.fit(rows[sample], target[sample], check_input=False)
            tree.random_state = tree_seed
            trees.append(tree)
    forest.estimators_, forest.estimators_features_, forest._seeds = trees, features, seeds
    forest._average_path_length_per_tree, forest._decision_path_lengths = zip(
        *[(_path_lengths(t.tree_.n_node_samples), t.tree_.compute_node_depths()) for t in trees], strict=True)
    return forest


def _path_lengths(n_node_samples: np.ndarray) -> np.ndarray:
    """scikit-learn's _average_path_length(n_node_samples), the same operations without its input checks
    (a third of the forest's fit): c(n) = 2 (ln(n - 1) + Euler's gamma) - 2 (n - 1) / n, 0 at n <= 1, 1 at 2."""
    n = n_node_samples.reshape((1, -1))
    out = np.zeros(n.shape)
    middle = ~((n <= 1) | (n == 2))
    out[n == 2] = 1.0
    out[middle] = 2.0 * (np.log(n[middle] - 1.0) + np.euler_gamma) - 2.0 * (n[middle] - 1.0) / n[middle]
    return out.reshape(n_node_samples.shape)


def _sample(n: int, k: int, rng: np.random.RandomState) -> np.ndarray:
    """sample_without_replacement(n, k, random_state=rng): the same indices (the order may differ)."""
    if k / n >= TRACKING_RATIO:
        return np.asarray(sample_without_replacement(n, k, random_state=rng))
    # Tracking selection: draw, redraw on a repeat; i.e. the first k distinct values of the stream.
    # Drawing past them is harmless: this generator is reseeded before its next use.
    stream = rng.randint(n, size=k + 16)
    for _ in range(64):
        _, first = np.unique(stream, return_index=True)
        if len(first) >= k:
            return np.asarray(stream[np.sort(first)[:k]])
        stream = np.concatenate([stream, rng.randint(n, size=k)])
    raise RuntimeError(f"no {k} distinct indices among {len(stream)} draws of {n}")


def score_samples(forest: IsolationForest, x: np.ndarray) -> np.ndarray:
    """`forest.score_samples(x)` (the opposite of the anomaly score), the same numbers."""
    if not _SUPPORTED:
        return np.asarray(forest.score_samples(x), dtype="float64")
    rows = np.ascontiguousarray(x, dtype=np.float32)
    depths = np.zeros(len(rows))
    subsample = forest._max_features != rows.shape[1]
    for tree, columns, node_depths, path_lengths in zip(
            forest.estimators_, forest.estimators_features_, forest._decision_path_lengths,
            forest._average_path_length_per_tree, strict=True):
        leaves = tree.tree_.apply(np.ascontiguousarray(rows[:, columns]) if subsample else rows)
        depths += node_depths[leaves] + path_lengths[leaves] - 1.0
    denominator = len(forest.estimators_) * _path_lengths(np.array([forest._max_samples]))
    scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
    return np.asarray(-scores, dtype="float64")
