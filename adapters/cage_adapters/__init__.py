"""cage_adapters: the LLM layer of cage-games (objectives as principals in transformers decoding).

Importing this package must stay cheap: torch and transformers are imported lazily, so that the
``cage`` command's core sub-commands work with the core dependencies alone. The public names
below are resolved on first access (module-level ``__getattr__``).

Examples
--------
>>> from transformers import LogitsProcessorList  # doctest: +SKIP
>>> from cage_adapters import CageLogitsProcessor, load_default_model, objectives as obj
>>> model, tok = load_default_model()  # doctest: +SKIP
>>> proc = CageLogitsProcessor([obj.Sentiment(tok), obj.Brevity(tok)],
...                            weights=[0.8, 0.2], beta=1.0, top_k=20)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AlignResult",
    "CageLogitsProcessor",
    "LinearMixingProcessor",
    "MissingModelPackageError",
    "Trace",
    "VocabMap",
    "__version__",
    "align",
    "load_default_model",
    "load_gemma_tokenizer",
    "load_model",
    "objectives",
]

_LAZY = {
    "CageLogitsProcessor": ("cage_adapters.processor", "CageLogitsProcessor"),
    "LinearMixingProcessor": ("cage_adapters.processor", "LinearMixingProcessor"),
    "Trace": ("cage_adapters.processor", "Trace"),
    "VocabMap": ("cage_adapters.vocab", "VocabMap"),
    "AlignResult": ("cage_adapters.decode", "AlignResult"),
    "align": ("cage_adapters.decode", "align"),
    "load_default_model": ("cage_adapters.models", "load_default_model"),
    "load_gemma_tokenizer": ("cage_adapters.models", "load_gemma_tokenizer"),
    "load_model": ("cage_adapters.models", "load_model"),
    "MissingModelPackageError": ("cage_adapters.models", "MissingModelPackageError"),
    "objectives": ("cage_adapters.objectives", None),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the distribution's version, shared with cage_games
        from cage_games import __version__

        globals()["__version__"] = __version__
        return __version__
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'cage_adapters' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
