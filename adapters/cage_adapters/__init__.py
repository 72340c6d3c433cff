"""cage_adapters: the LLM layer of cage-games (objectives as principals in transformers decoding).

Importing this package must stay cheap: torch and transformers are imported lazily, so that the
``cage`` command's core sub-commands work with the core dependencies alone.
"""
