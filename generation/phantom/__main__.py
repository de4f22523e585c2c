"""``python -m generation.phantom``: write a phantom dataset (see ``generation.phantom.cli``)."""

from generation.phantom.cli import main

raise SystemExit(main())
