"""The one user cache directory of cage-games (compiled kernels, exported model checkpoints).

Loading native code from a cache is only as safe as the cache: anything another local user
can write there would run inside this process. :func:`private_dir` and :func:`trusted_file`
are the checks made before a cached library is loaded: the directory and the file belong to
the current user and nobody else can write them, and the file's SHA-256 matches the record
written next to it when this user built it (the record is checked the same way).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

__all__ = ["cache_dir", "private_dir", "record_hash", "sha256_file", "trusted_file"]


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


def _owned_private(st: os.stat_result) -> bool:
    """Owned by the current user and not writable by group or others."""
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    return st.st_uid == uid and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def private_dir(path: Path) -> str | None:
    """Create ``path`` (mode 0700) if needed and check that only this user controls it.

    Returns
    -------
    str or None
        ``None`` if the directory is trusted, else the reason it is not (a symbolic link,
        not a directory, another owner, group- or other-writable).
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot create {path}: {exc}"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a plain directory"
    if not _owned_private(st):
        return f"{path} belongs to another user or is writable by others"
    return None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain_private_file(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and _owned_private(st)


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_hash(path: Path) -> None:
    """Write the SHA-256 record of ``path`` next to it (``<name>.sha256``, mode 0600)."""
    rec = _record_path(path)
    tmp = rec.with_name(f".{rec.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(sha256_file(path) + "\n")
    os.replace(tmp, rec)


def trusted_file(path: Path) -> str | None:
    """Whether a cached file may be loaded.

    Returns
    -------
    str or None
        ``None`` if ``path`` and its ``.sha256`` record are plain files of this user that
        nobody else can write and the file's hash matches the record; else the reason.
    """
    if not path.exists() and not path.is_symlink():
        return "absent"
    rec = _record_path(path)
    if not _plain_private_file(path):
        return f"{path} is not a plain file of this user, or others can write it"
    if not _plain_private_file(rec):
        return f"{path} has no trusted hash record"
    try:
        expected = rec.read_text().strip()
        actual = sha256_file(path)
    except OSError as exc:
        return f"cannot read {path}: {exc}"
    if expected != actual:
        return f"{path} does not match the hash recorded when it was built"
    return None
