"""The dependency direction is one way: adapters -> core. The core stays light."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_the_llm_layer():
    for path in (ROOT / "cage_games").rglob("*.py"):
        bad = _imports(path) & {"cage_adapters", "transformers", "tokenizers", "accelerate"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_importing_the_core_loads_neither_torch_nor_transformers():
    code = (
        "import sys, cage_games; "
        "bad = [m for m in ('torch', 'transformers', 'cage_adapters') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cage_solve_does_not_load_torch():
    code = (
        "import sys; from cage_adapters.cli import main; "
        f"rc = main(['solve', r'{ROOT / 'examples/games/one_principal.json'}', '--json']); "
        "sys.exit(10 + rc if 'torch' in sys.modules else rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr[-2000:]
