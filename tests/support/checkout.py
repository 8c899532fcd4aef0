"""Child processes run this checkout's code, not whatever ``twin`` is installed.

``checkout_env(**extra)`` is ``os.environ`` with the repository root prepended to ``PYTHONPATH`` (and
``extra`` set); give it to every ``python -m twin.cli`` (or ``-m ingest``) a test starts::

    subprocess.run([sys.executable, "-m", "twin.cli", "grid", "info", path], env=checkout_env())
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The root of this checkout."""


def checkout_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default ``os.environ``) with ``PYTHONPATH`` = the repository root, then any earlier
    ``PYTHONPATH``; ``extra`` variables set on top (e.g. ``PYTHONUNBUFFERED="1"``)."""
    env = dict(os.environ if base is None else base)
    before = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([before] if before else [])])
    env.update(extra)
    return env
