"""Shared test configuration: offline, headless, deterministic."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# torch's OpenMP threads busy-wait; on a loaded 2-core machine that made decoding tests ~10x
# slower. Must be set before torch is imported (test modules import it after this file).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The Triton kernel runs on CPU tensors in Triton's interpreter (there is no GPU in CI). It
# must be on before triton.jit decorates the kernel, i.e. before cage_games.torch is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")


# Tiny models for the adapter tests (module-scoped; a test module may define its own). The
# imports are lazy: the core tests run without torch or transformers.
@pytest.fixture(scope="module")
def tok():
    from adapters_fixtures import chat_tokenizer

    return chat_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    from adapters_fixtures import tiny_llama

    return tiny_llama(tok)


@pytest.fixture(scope="module")
def guide(tok):
    from adapters_fixtures import tiny_gpt2

    return tiny_gpt2(tok)
