"""FairDerm generation library: the phantom dataset, diffusion models and balanced generation.

Pure PyTorch + diffusers + peft. It must never import Django or Celery (``generation/ruff.toml``
enforces that); the web app and the workers call into it, passing plain values and paths.
It may build on ``validation/`` (vocabulary, colour science, file safety), not the reverse.
"""
