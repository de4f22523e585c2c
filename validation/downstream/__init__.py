"""Downstream evaluation: does synthetic data help a classifier on dark skin?

Baseline (real only), traditional augmentation and synthetic-augmented classifiers are
trained on the training datasets' train split, selected on their validation split, and
evaluated once on a locked external test set: per-FST AUROC with bootstrap CIs, sensitivity
and specificity at a fixed operating point, equal-opportunity and equalized-odds
differences, calibration, and the paired augmented - baseline differences behind the
go/no-go inputs (``validation.downstream.report``).
"""

from validation.downstream.config import ClassifierConfig, ExperimentConfig
from validation.downstream.data import LockedTestSet, LockedTestSetError, Sample
from validation.downstream.experiment import run_experiment

__all__ = [
    "ClassifierConfig",
    "ExperimentConfig",
    "LockedTestSet",
    "LockedTestSetError",
    "Sample",
    "run_experiment",
]
