"""TF Serving's model layout on disk, in one place.

A model base path BASE/NAME holds integer-named version folders; TF Serving
loads those and ignores every other name (tfkit stages exports under
`.tmp-*` for that reason). Everyone that scans, resolves, hashes or writes
files in that layout goes through these helpers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from toolkit.errors import InputError

# What a version folder holds besides the SavedModel (see docs/artifacts.md).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
HELDOUT_FILE = "assets.extra/heldout.npz"
#: the inputs an export fed each signature (warmup, calibration, golden outputs): INPUTS_DIR/<signature>.npz
INPUTS_DIR = "assets.extra/tfkit_inputs"
MANIFEST_FILE = "manifest.json"


def version_folders(model_dir: str | Path) -> dict[int, Path]:
    """Integer-named subfolders of BASE/NAME -> their paths, as TF Serving sees them."""
    model_dir = Path(model_dir)
    return {int(p.name): p for p in sorted(model_dir.iterdir()) if p.is_dir() and p.name.isdigit()}


def version_numbers(model_dir: str | Path) -> list[int]:
    """The version numbers under BASE/NAME, ascending."""
    return sorted(version_folders(model_dir))


def version_number(version_dir: str | Path) -> int | None:
    """The version a folder stands for (its integer name), or None."""
    name = Path(version_dir).name
    return int(name) if name.isdigit() else None


def resolve_model(path) -> Path:
    """A SavedModel version folder, or the latest integer version of a model folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model path not found: {path}")
    if (path / "saved_model.pb").is_file():
        return path
    versions = {}
    if path.is_dir():
        versions = {v: p for v, p in version_folders(path).items() if (p / "saved_model.pb").is_file()}
    if not versions:
        hint = (
            f"; to check a .tflite file, check its SavedModel with --tflite {path}" if path.suffix == ".tflite" else ""
        )
        raise InputError(
            f"{path} is neither a SavedModel version folder (no saved_model.pb) "
            f"nor a model folder with integer-named versions holding one{hint}"
        )
    return versions[max(versions)]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(folder: str | Path) -> str:
    """One sha256 over every file of a folder: each relative path and its content's sha256, in path order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
