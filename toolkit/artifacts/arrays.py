"""Named arrays in an .npz file, strings kept whole.

numpy's 'S' arrays drop trailing zero bytes (which cuts serialized protos such
as tf.Example), and object arrays need pickle. So a string array NAME is
stored as two arrays: NAME.bytes (uint8, every value's bytes concatenated in C
order) and NAME.lengths (int64, each value's length, in the array's shape).
`toolkit.parity.inputs` reads this form back (`tfkit check --inputs`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: suffixes of the two arrays that carry one string array's bytes losslessly
BYTES_SUFFIX, LENGTHS_SUFFIX = ".bytes", ".lengths"


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` to an .npz at `path`, string arrays as NAME.bytes + NAME.lengths; never pickled."""
    stored = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind in "OSU":
            values = [v.encode() if isinstance(v, str) else bytes(v) for v in value.ravel().tolist()]
            stored[name + BYTES_SUFFIX] = np.frombuffer(b"".join(values), np.uint8)
            stored[name + LENGTHS_SUFFIX] = np.array([len(v) for v in values], np.int64).reshape(value.shape)
        else:
            stored[name] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(f, **stored)
    return path
