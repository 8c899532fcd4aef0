"""The ``twin`` command line: the composition root, the only place that wires every package together.

Nothing imports it; ``python -m twin.cli`` and the ``twin`` console script both run `main`.
"""

from twin.cli.main import main

__all__ = ["main"]
