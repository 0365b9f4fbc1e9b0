"""The version matrix, lint and types: ``nox`` runs every session, ``nox -s NAME`` one.

* ``tests-oldest``: the oldest supported pair, Python 3.10 with NumPy 1.23 (and test tools that
  still support it), the full test suite;
* ``tests-newest``: Python 3.13 with the newest NumPy;
* ``tests-3.12``: Python 3.12 with the newest NumPy (not run by CI; by hand before a release);
* ``lint``: ``ruff check`` and ``ruff format --check``;
* ``types``: mypy and pyright (basic mode) on ``xpconv/`` and on every Python block of the README.

Interpreters come from this machine: ``pythonX.Y`` on the PATH if it runs, else a pyenv
installation (``$PYENV_ROOT/versions/X.Y.*``).  A session whose interpreter is missing is
skipped, saying which and where it looked; nothing is downloaded.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

nox.options.sessions = ["lint", "types", "tests-oldest", "tests-newest"]
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = False

OLDEST_NUMPY = "numpy==1.23.*"


def find_python(version: str) -> str | None:
    """An interpreter for ``version`` ("3.10"): on the PATH if it runs, else under pyenv."""
    candidates = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(
        glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")), reverse=True
    )
    for candidate in filter(None, candidates):
        try:  # a pyenv shim exists on the PATH but fails when the version is not selected
            done = subprocess.run([candidate, "-c", "import sys; print(sys.version)"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return candidate
    return None


def _matrix_session(name: str, version: str, numpy: str) -> None:
    python = find_python(version)

    @nox.session(name=name, python=python, venv_backend="venv" if python else "none")
    def tests(session: nox.Session) -> None:
        if python is None:
            session.skip(
                f"Python {version} not found: no working python{version} on the PATH, none under $PYENV_ROOT/versions"
            )
        session.install("-e", ".[test]", numpy)
        session.run(
            "python", "-c", "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
        )
        # the type checks have their own session (they check the code, not the interpreter); the
        # slow end-to-end runs of the command line (marked slow) are left to CI's main run
        session.run("python", "-m", "pytest", "-m", "not types and not slow", *session.posargs)


_matrix_session("tests-oldest", "3.10", OLDEST_NUMPY)
_matrix_session("tests-newest", "3.13", "numpy")
_matrix_session("tests-3.12", "3.12", "numpy")


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(venv_backend="none")
def types(session: nox.Session) -> None:
    session.run("python", "-m", "pytest", "-m", "types", "tests/test_readme.py", *session.posargs)
