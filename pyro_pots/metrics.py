"""Clustering scores against known labels (labels are used for scoring only)."""

from typing import Dict

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, confusion_matrix, normalized_mutual_info_score


def hungarian_accuracy(labels: np.ndarray, assignments: np.ndarray) -> float:
    """Accuracy under the best one-to-one map from clusters to labels (Hungarian method).

    Clusters left without a label when there are more clusters than labels count as wrong.
    """
    classes = np.unique(np.concatenate([labels, assignments]))
    counts = confusion_matrix(labels, assignments, labels=classes)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def clustering_scores(labels: np.ndarray, assignments: np.ndarray) -> Dict[str, float]:
    """ACC (Hungarian), NMI and ARI of ``assignments`` against ``labels``."""
    return {
        "acc": hungarian_accuracy(labels, assignments),
        "nmi": float(normalized_mutual_info_score(labels, assignments)),
        "ari": float(adjusted_rand_score(labels, assignments)),
    }
