"""Every script under examples/ runs to completion (LLM examples only in the slow run)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))


def _heavy(path: Path) -> bool:
    return path.name.startswith(("align", "decode"))


def _param(path: Path):
    marks = [pytest.mark.slow, pytest.mark.real_model] if _heavy(path) else []
    return pytest.param(path, id=path.name, marks=marks)


@pytest.mark.parametrize("script", [_param(p) for p in SCRIPTS])
def test_example_runs(script, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [] if _heavy(script) else [str(tmp_path)]  # the others write their plots there
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
