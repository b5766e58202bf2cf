"""Ways a version folder on disk goes bad, and a server that honours file permissions.

`break_version(folder, kind)` turns a copy of a good version into one of the
broken versions TF Serving must refuse to serve; `publish_broken_version`
copies, breaks and renames one into place. `unreadable folder` removes every
permission bit; since tests run as root, which reads anything, the server is
then started without the capabilities that let root ignore permissions
(`permission_honouring_prefix()`), so the folder is really unreadable to it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

from toolkit.artifacts.layout import version_numbers

BROKEN_KINDS = ("truncated saved_model.pb", "missing variables", "garbage saved_model.pb", "unreadable folder")
# The capabilities that let root bypass file permission checks.
_DAC_CAPS = "-dac_override,-dac_read_search"


def break_version(folder: str | Path, kind: str, seed: int = 0) -> None:
    """Damage a (copied) version folder in place, the way `kind` names."""
    folder = Path(folder)
    graph = folder / "saved_model.pb"
    if kind == "truncated saved_model.pb":
        data = graph.read_bytes()
        graph.write_bytes(data[: len(data) // 2])
    elif kind == "missing variables":
        shutil.rmtree(folder / "variables")
    elif kind == "garbage saved_model.pb":
        graph.write_bytes(random.Random(seed).randbytes(4096))
    elif kind == "unreadable folder":
        folder.chmod(0)
    else:
        raise ValueError(f"unknown kind of broken version {kind!r}; choose from {', '.join(BROKEN_KINDS)}")


def publish_broken_version(model_dir: str | Path, kind: str, version: int, source: int | None = None) -> Path:
    """Copy version `source` (default: the newest) of BASE/NAME, break the copy the way
    `kind` names, and rename it into place as `version`: a polling server sees it whole."""
    model_dir = Path(model_dir)
    if kind not in BROKEN_KINDS:
        raise ValueError(f"unknown kind of broken version {kind!r}; choose from {', '.join(BROKEN_KINDS)}")
    if source is None:
        source = max(version_numbers(model_dir), default=None)
        if source is None:
            raise ValueError(f"{model_dir}: no version to copy")
    final = model_dir / str(version)
    if final.exists():
        raise ValueError(f"{final}: version {version} already exists")
    staging = model_dir / f".broken-{version}"
    shutil.copytree(model_dir / str(source), staging)
    break_version(staging, kind)
    staging.rename(final)
    return final


def permission_honouring_prefix() -> list[str] | None:
    """A command prefix running a program without root's permission override; None if impossible here."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        return []  # permissions already apply
    if setpriv is None:
        return None
    prefix = [setpriv, f"--bounding-set={_DAC_CAPS}", "--"]
    probe = subprocess.run(prefix + ["true"], capture_output=True)
    return prefix if probe.returncode == 0 else None
