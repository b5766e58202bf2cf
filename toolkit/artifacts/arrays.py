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


def split_bytes(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A string tensor as (uint8 bytes concatenated in C order, each value's length shaped like it)."""
    items = [v if isinstance(v, bytes) else str(v).encode() for v in value.ravel().tolist()]
    return (np.frombuffer(b"".join(items), np.uint8), np.array([len(v) for v in items], np.int64).reshape(value.shape))


def join_bytes(data: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The object array of bytes that `split_bytes` stored (ValueError when they do not fit together)."""
    if data.dtype != np.uint8 or data.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths < 0).any():
        raise ValueError(
            f"expected a 1-D uint8 array and non-negative integer lengths "
            f"(got {data.dtype}{list(data.shape)} and {lengths.dtype})"
        )
    if int(lengths.sum()) != data.size:
        raise ValueError(f"the lengths add up to {int(lengths.sum())} bytes, the data holds {data.size}")
    ends = np.cumsum(lengths.ravel())
    blob = data.tobytes()
    values = [blob[end - size : end] for end, size in zip(ends.tolist(), lengths.ravel().tolist(), strict=True)]
    return np.array(values, dtype=object).reshape(lengths.shape)


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` to an .npz at `path`, string arrays as NAME.bytes + NAME.lengths; never pickled."""
    stored = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind in "OSU":
            stored[name + BYTES_SUFFIX], stored[name + LENGTHS_SUFFIX] = split_bytes(value)
        else:
            stored[name] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(f, **stored)
    return path
