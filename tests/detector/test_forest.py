"""detector.models.forest builds scikit-learn's forest and scores with it exactly as scikit-learn does:
the same trees (structure, thresholds, node counts and values), the same fitted attributes, and
bit-identical score_samples, on random data of several shapes, with ties and constant columns."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from detector.models import forest


def _rows(n: int, columns: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, columns)) * rng.uniform(0.1, 50.0, columns)
    if kind == "ties":  # few distinct values: many splits land on repeated values
        x = np.round(x / x.std(axis=0)) * 0.5
    elif kind == "constant":  # a feature that never moves (a failure rate that was always 0)
        x[:, 0] = 0.0
    elif kind == "heavy":  # long tails and a block of repeated rows, like past incidents
        x = np.sign(x) * np.abs(x) ** 3
        x[n // 3:n // 3 + n // 10] = x[n // 3]
    return x


# (rows, columns, kind): below 256 rows, the permutation draw (258-25,600 rows), the tracking draw
# above it (a 7-day 15 s week is 40,320 rows).
SHAPES = [
    (120, 3, "plain"), (700, 3, "ties"), (5000, 3, "plain"), (5000, 2, "constant"),
    (26000, 3, "heavy"), (40320, 3, "plain"), (40320, 3, "ties"), (30000, 4, "constant"),
]


@pytest.fixture(scope="module", params=SHAPES, ids=[f"{n}x{c}-{k}" for n, c, k in SHAPES])
def pair(request: pytest.FixtureRequest) -> tuple[np.ndarray, IsolationForest, IsolationForest]:
    n, columns, kind = request.param
    x = _rows(n, columns, kind, seed=n + columns)
    reference = IsolationForest(n_estimators=40, random_state=7).fit(x)
    return x, reference, forest.fit(x, n_estimators=40, random_state=7)


def test_fit_builds_the_trees_scikit_learn_builds(pair: tuple[np.ndarray, IsolationForest, IsolationForest]) -> None:
    _, reference, ours = pair
    assert len(ours.estimators_) == len(reference.estimators_) == 40
    for theirs, mine in zip(reference.estimators_, ours.estimators_, strict=True):
        assert mine.get_params() == theirs.get_params()
        for name in ("children_left", "children_right", "feature", "threshold", "n_node_samples",
                     "weighted_n_node_samples", "impurity", "value"):
            np.testing.assert_array_equal(getattr(mine.tree_, name), getattr(theirs.tree_, name), err_msg=name)


def test_fit_sets_the_fitted_attributes_scikit_learn_sets(
        pair: tuple[np.ndarray, IsolationForest, IsolationForest]) -> None:
    _, reference, ours = pair
    assert vars(ours).keys() == vars(reference).keys()
    trees = {"estimators_", "estimator_"}
    arrays = {"estimators_features_", "_seeds", "_average_path_length_per_tree", "_decision_path_lengths"}
    for name, value in vars(reference).items():
        if name in arrays:
            mine = getattr(ours, name)
            assert type(mine) is type(value) and len(mine) == len(value), name
            for a, b in zip(mine, value, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
        elif name not in trees:
            assert getattr(ours, name) == value, name
    assert ours.estimator_.get_params() == reference.estimator_.get_params()


def test_scores_are_scikit_learns_bit_for_bit(pair: tuple[np.ndarray, IsolationForest, IsolationForest]) -> None:
    x, reference, ours = pair
    rng = np.random.default_rng(1)
    outside = x[:50] * 10.0 + rng.standard_normal((50, x.shape[1]))  # beyond the training range
    for rows in (x, x[::7], x[-1:], outside, np.concatenate([x[:3], x[:3]])):
        expected = reference.score_samples(rows)
        np.testing.assert_array_equal(forest.score_samples(reference, rows), expected)
        np.testing.assert_array_equal(forest.score_samples(ours, rows), expected)
        np.testing.assert_array_equal(ours.score_samples(rows), expected)


def test_scores_read_the_features_a_subsampled_forest_drew() -> None:
    x = _rows(3000, 4, "plain", seed=3)
    reference = IsolationForest(n_estimators=30, max_features=2, random_state=0).fit(x)
    assert any(len(f) == 2 and list(f) != [0, 1] for f in reference.estimators_features_)
    np.testing.assert_array_equal(forest.score_samples(reference, x[:500]), reference.score_samples(x[:500]))


def test_sampled_indices_are_scikit_learns() -> None:
    from sklearn.utils.random import sample_without_replacement

    rng = np.random.RandomState()
    for n, k, seed in ((40320, 256, 1), (26000, 256, 2), (1_000_000, 256, 3), (600, 256, 4), (256, 256, 5)):
        rng.seed(seed)
        ours = forest._sample(n, k, rng)
        expected = sample_without_replacement(n, k, random_state=np.random.RandomState(seed))
        assert sorted(ours.tolist()) == sorted(expected.tolist())


def test_the_installed_scikit_learn_is_one_the_fast_path_was_checked_with() -> None:
    # CI installs the newest scikit-learn: a release this module was not checked with would fall back
    # to scikit-learn's own (slow) code. Fail here, so the new release gets checked and added to TESTED.
    import sklearn

    assert forest.supported(sklearn.__version__), sklearn.__version__
    assert forest.supported("1.9.0") and forest.supported("1.9.12")
    assert not forest.supported("1.10.0") and not forest.supported("2.0") and not forest.supported("1.8.2")
