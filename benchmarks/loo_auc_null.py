"""How often does leave-one-out AUC pass 0.6 on a feature that carries no class signal?

The blinding audit (tests/security/test_blinding_audit.py) puts image response times among
its features. Timing noise that differs by nothing but chance still ranks the classes
unevenly, and AUC uses ranks only, so the noise level does not matter; the study size does.
This simulates the audit's classifier (standard scaling, logistic regression, leave-one-out)
on a timing-like feature (log-normal noise) plus one that differs at two positions only (as
the first and last case pages do), with the classes in random order.

    .venv/bin/python benchmarks/loo_auc_null.py --per-class 100 --studies 500
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits


def null_aucs(per_class: int, studies: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    aucs = []
    with threadpool_limits(1):
        for _ in range(studies):
            labels = np.array([0] * per_class + [1] * per_class)
            rng.shuffle(labels)
            features = np.zeros((2 * per_class, 2))
            features[:, 0] = rng.lognormal(0.0, 0.3, 2 * per_class)
            features[0, 1], features[-1, 1] = 1.0, -1.0
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            scores = cross_val_predict(
                model, features, labels, cv=LeaveOneOut(), method="predict_proba"
            )[:, 1]
            aucs.append(roc_auc_score(labels, scores))
    return np.array(aucs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    aucs = null_aucs(args.per_class, args.studies, args.seed)
    print(
        f"{args.per_class} + {args.per_class} cases, {args.studies} studies: "
        f"mean AUC {aucs.mean():.3f}, above 0.6 in {np.sum(aucs > 0.6)} "
        f"({np.mean(aucs > 0.6):.2%}), largest {aucs.max():.3f} "
        f"({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
