"""Every README code block runs on its own, in a fresh interpreter (the CUDA one on the CuPy stand-in),
and type-checks, as the package does."""

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# A block that asks for "cuda" runs with the stand-in registered as cupy (no GPU here).
STAND_IN = "import sys, fake_cupy; sys.modules['cupy'] = fake_cupy.make_module()\n"


def test_readme_has_its_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{k}" for k in range(len(BLOCKS))])
def test_readme_block_runs_alone(block, tmp_path):
    code = (STAND_IN if '"cuda"' in block else "") + block
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "every block prints what it shows"


def _type_checker(name: str) -> list[str]:
    """The command line of an installed type checker (a test extra), or a skip naming it."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[test]'")
    if name == "pyright" and shutil.which("node") is None:
        pytest.skip("pyright runs on Node.js, which is not on the PATH")
    return [sys.executable, "-m", name]


@pytest.mark.types
@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_readme_blocks_and_package_type_check(checker, tmp_path):
    """The package's annotations are its contract: mypy and pyright (basic mode) accept xpconv/
    and every README block as a user would write it."""
    for k, block in enumerate(BLOCKS):
        (tmp_path / f"readme_block{k}.py").write_text(block)
    blocks = sorted(str(p) for p in tmp_path.glob("readme_block*.py"))
    if checker == "mypy":
        args = [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "xpconv",
            *blocks,
        ]
    else:
        args = ["--project", str(ROOT / "pyproject.toml"), "xpconv", *blocks]
    result = subprocess.run([*_type_checker(checker), *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_public_function_is_annotated():
    """Every function and method of xpconv whose name has no leading underscore annotates every
    parameter and its return (``self``/``cls`` aside), so that pyright does not infer types from defaults."""
    missing = []
    for path in sorted((ROOT / "xpconv").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for owner, node in _functions(tree.body, ""):
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            names = [a.arg for a in args if a.annotation is None and a.arg not in ("self", "cls")]
            names += ["return"] if node.returns is None else []
            if names:
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner}{node.name}: {names}")
    assert not missing, "\n".join(missing)


def _functions(body, owner):
    """Public functions and methods (names without a leading underscore, dunders included)."""
    for node in body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from _functions(node.body, f"{owner}{node.name}.")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            dunder = node.name.startswith("__") and node.name.endswith("__")
            if dunder or not node.name.startswith("_"):
                yield owner, node
