"""Write ``tests/cupy_api.json``: the public names of the parts of CuPy the stand-in imitates.

Run with the real CuPy installed (``import cupy`` works without a GPU):

    python tests/snapshot_cupy_api.py

``fake_cupy`` offers no name that is missing here, and ``test_fake_cupy.py`` compares this
snapshot with the installed CuPy whenever one is importable.
"""

import json
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("cupy_api.json")
PARTS = (
    "cupy",
    "cupy.ndarray",
    "cupy.random",
    "cupy.random.Generator",
    "cupy.cuda",
    "cupy.cuda.runtime",
    "cupy.lib",
    "cupy.lib.stride_tricks",
)


def public_names(cupy) -> dict:
    """``{part: sorted public names}`` for every part in :data:`PARTS`."""
    objects = {
        "cupy": cupy,
        "cupy.ndarray": cupy.ndarray,
        "cupy.random": cupy.random,
        "cupy.random.Generator": cupy.random.Generator,
        "cupy.cuda": cupy.cuda,
        "cupy.cuda.runtime": cupy.cuda.runtime,
        "cupy.lib": cupy.lib,
        "cupy.lib.stride_tricks": cupy.lib.stride_tricks,
    }
    return {part: sorted(n for n in dir(objects[part]) if not n.startswith("_")) for part in PARTS}


def main() -> None:
    import cupy

    data = {"cupy_version": cupy.__version__, "names": public_names(cupy)}
    SNAPSHOT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT.name}: CuPy {cupy.__version__}, {sum(map(len, data['names'].values()))} names")


if __name__ == "__main__":
    main()
