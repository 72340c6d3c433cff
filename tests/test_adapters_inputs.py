"""Issue 11: adapter inputs (a string prompt, numpy/torch scalars) and target-KL reporting."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from adapters_fixtures import tiny_llama  # noqa: E402
from cage_adapters import objectives as obj  # noqa: E402
from cage_adapters.cli import main  # noqa: E402
from cage_adapters.decode import align  # noqa: E402
from cage_adapters.processor import CageLogitsProcessor, LinearMixingProcessor  # noqa: E402


def test_a_string_prompt_is_one_prompt(model, tok):
    # It used to be iterated: "Hello" decoded five one-letter prompts.
    out = align(model, tok, "Hello", {"brevity": 1.0}, max_new_tokens=2)
    assert len(out) == 1 and out[0].prompt == "Hello"


@pytest.mark.parametrize(
    "bad, error, match",
    [([], ValueError, "empty"), ([1, 2], TypeError, r"prompts\[0\]"), (b"hi", TypeError, "str")],
)
def test_bad_prompts_are_refused(model, tok, bad, error, match):
    with pytest.raises(error, match=match):
        align(model, tok, bad, {"brevity": 1.0}, max_new_tokens=1)


@pytest.mark.parametrize("cls", [CageLogitsProcessor, LinearMixingProcessor])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta": np.float32(0.5), "top_k": np.int64(5)},
        {"beta": torch.tensor(0.5), "top_k": torch.tensor(5), "top_p": torch.tensor(0.9)},
        {"beta": np.array(0.5), "target_kl": np.float64(0.2), "top_p": np.float32(0.5)},
        {"target_kl": torch.tensor(0.3, dtype=torch.float64), "top_k": np.uint8(7)},
    ],
    ids=["numpy", "torch", "0-d numpy", "mixed"],
)
def test_processor_accepts_numpy_and_torch_scalars(tok, cls, kwargs):
    proc = cls([obj.Brevity(tok)], weights=[1.0], **kwargs)
    for name in ("beta", "target_kl", "top_p"):
        if name in kwargs:
            assert type(getattr(proc, name)) is float
            assert getattr(proc, name) == pytest.approx(float(kwargs[name]))
    if "top_k" in kwargs:
        assert type(proc.top_k) is int and proc.top_k == int(kwargs["top_k"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"beta": True}, TypeError, "beta must be a positive finite number, got bool"),
        ({"beta": "1"}, TypeError, "beta must be a positive finite number, got str"),
        ({"beta": np.float64(0.0)}, ValueError, "beta must be a positive finite number, got 0.0"),
        ({"beta": float("nan")}, ValueError, "beta must be a positive finite number, got nan"),
        ({"beta": torch.tensor([0.5, 0.5])}, TypeError, r"shape \(2,\)"),
        ({"top_k": 2.0}, TypeError, "top_k must be a positive integer or None, got float"),
        ({"top_k": np.int32(0)}, ValueError, "top_k must be a positive integer or None, got 0"),
        ({"top_p": np.float32(1.5)}, ValueError, r"top_p must be in \(0, 1\] or None, got 1.5"),
        ({"target_kl": -0.1}, ValueError, "target_kl"),
        ({"target_kl": np.bool_(True)}, TypeError, "target_kl"),
    ],
)
def test_processor_scalar_errors_say_what_is_expected(tok, kwargs, error, match):
    with pytest.raises(error, match=match):
        CageLogitsProcessor([obj.Brevity(tok)], weights=[1.0], **kwargs)


def test_align_reports_the_target_kl_reached(model, tok):
    # An unreachable target: the realised KL stays below it and the share of steps says so.
    (res,) = align(
        model, tok, "Say hello.", {"brevity": 1.0}, target_kl=50.0, max_new_tokens=4, top_k=5
    )
    assert res.target_kl == 50.0
    assert res.kl_reached_share is not None and 0.0 <= res.kl_reached_share < 1.0
    assert res.mean_kl < 50.0
    # a fixed beta has no target (with neither given, the default target KL applies)
    (plain,) = align(model, tok, "Say hello.", {"brevity": 1.0}, beta=1.0, max_new_tokens=2)
    assert plain.target_kl is None and plain.kl_reached_share is None
    (default,) = align(model, tok, "Say hello.", {"brevity": 1.0}, max_new_tokens=2)
    assert default.target_kl == pytest.approx(0.3)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("tiny-model-inputs")
    tiny_llama(tok).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_cli_prints_asked_and_realised_target_kl(tiny_dir, capsys):
    argv = ["align", "Write a review.", "--model", str(tiny_dir), "-o", "brevity=1",
            "--target-kl", "50", "--max-new-tokens", "3", "--top-k", "5"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "asked 50 (target KL), realised" in out and "reached at" in out
    assert main([*argv, "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)["results"]
    assert res["target_kl"] == 50 and 0 <= res["kl_reached_share"] < 1
