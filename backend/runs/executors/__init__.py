"""Executors: the Django side of each run kind.

An executor takes a ``RunContext`` and the kind's parsed config, loads rows, calls the pure
libraries in generation/ and validation/, stores results and returns a JSON-able summary.
They are imported lazily (only inside workers), so the web process never imports torch.
"""
