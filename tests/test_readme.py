"""The README's examples run as written (the CUDA one on the CuPy stand-in)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(fake_cupy_module):
    import numpy as np

    namespace = {"book_param": np.random.default_rng(0).standard_normal((3, 16, 5, 5))}
    blocks = _blocks()
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["y"].shape == (8, 16, 32, 32)
    assert namespace["y_host"].shape == (8, 16, 32, 32)
    assert namespace["weight"].shape == (16, 3, 5, 5)
    assert namespace["loss"] > 0 and namespace["model"].layers[0].weight.grad is not None
