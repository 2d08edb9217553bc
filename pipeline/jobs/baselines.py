"""The SMD protocol's baselines, fitted on a machine's train half only: the reconstruction error of
a principal-component model keeping 95 % of the variance, or the anomaly score of 100 Isolation
Forest trees (standardised channels), each with the ``BASELINE_QUANTILE`` of its train-half scores
as its threshold."""

from __future__ import annotations

import numpy as np

BASELINE_QUANTILE = 0.99


def baseline(method: str, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, float]:
    """(test scores, threshold) of a baseline fitted on ``train`` only."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)  # a constant channel keeps scale 1
    z_train, z_test = scaler.transform(train), scaler.transform(test)
    if method == "pca":
        pca = PCA(n_components=0.95, svd_solver="full").fit(z_train)

        def score(z: np.ndarray) -> np.ndarray:
            return ((z - pca.inverse_transform(pca.transform(z))) ** 2).sum(axis=1)

    elif method == "iforest":
        forest = IsolationForest(n_estimators=100, random_state=0).fit(z_train)

        def score(z: np.ndarray) -> np.ndarray:
            return -forest.score_samples(z)

    else:
        raise ValueError(f"unknown baseline {method!r}")
    return score(z_test), float(np.quantile(score(z_train), BASELINE_QUANTILE))
