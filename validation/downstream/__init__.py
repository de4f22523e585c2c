"""Downstream evaluation: does synthetic data help a classifier on dark skin?

Baseline (real only), traditional augmentation and synthetic-augmented classifiers are
trained on the training datasets' train split, selected on their validation split, and
evaluated once on a locked external test set: per-FST AUROC with bootstrap CIs, sensitivity
and specificity at a fixed operating point, equal-opportunity and equalized-odds
differences, calibration, and the paired augmented - baseline differences behind the
go/no-go inputs (``validation.downstream.report``).

Modules: ``config`` (no torch; safe for the web process), ``data``, ``models``, ``train``,
``metrics``, ``experiment`` (``run_experiment``) and ``report``.
"""
