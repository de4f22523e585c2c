"""FairDerm validation library: skin-tone science, image metrics and downstream evaluation.

Pure Python (numpy, torch, scikit-learn, scipy). It must never import Django, Celery or
FairDerm's other layers; ``validation/ruff.toml`` enforces that. ``generation/`` may import
from here, never the other way round.
"""
