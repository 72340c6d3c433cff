"""The one user cache directory of cage-games (compiled kernels, exported model checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache directory (not created here).

    Returns
    -------
    pathlib.Path
        ``$CAGE_CACHE``, else ``$XDG_CACHE_HOME/cage-games``, else ``~/.cache/cage-games``.
    """
    env = os.environ.get("CAGE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cage-games"
