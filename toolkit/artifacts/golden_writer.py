"""`write_golden`: compute a version folder's golden outputs with its SavedModel and write them
into `assets.extra/tfkit_golden/` (the format: `toolkit.artifacts.golden`).

Works on any SavedModel version folder given the inputs to feed; for a
one-input classifier like tfkit's, `heldout=` features are enough: the
held-out rows plus the boundary and extreme cases `tfkit check` feeds.
The outputs are computed the way `tfkit check` computes its reference:
the reloaded SavedModel's signature, called eagerly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.artifacts import golden
from toolkit.errors import InputError, root_cause
from toolkit.policies import default_policies, policies_json
from toolkit.tfenv import import_tf

#: the runtime whose outputs an export's golden file holds
REFERENCE = "savedmodel"
#: how those outputs are judged when they are a candidate: as another TensorFlow build's
REFERENCE_POLICY = "float"


def write_golden(
    folder,
    feeds: list[golden.GoldenFeed] | None = None,
    heldout: np.ndarray | None = None,
    signature: str = "serving_default",
    tags=("serve",),
    name: str | None = None,
    version: int | None = None,
) -> Path:
    """Run `feeds` (or the held-out rows and boundary cases built from `heldout` features) through
    `signature` of the SavedModel in `folder`; write the golden file; return its .json path.

    Call it last when building a version: it records the sha256 of the SavedModel and of every .tflite
    file then in `folder`. `name`/`version` default to the folder's parent name and its own name.
    """
    folder = Path(folder)
    tf = import_tf()
    try:
        function = tf.saved_model.load(str(folder), tags=list(tags)).signatures[signature]
    except KeyError:
        raise InputError(f"SavedModel {folder} has no signature {signature!r} to write a golden file for") from None
    except Exception as exc:  # TF raises many types for unloadable models
        raise InputError(f"cannot load SavedModel {folder} for its golden file: {root_cause(exc)}") from None
    inputs = _input_specs(function)

    def infer(feed: dict) -> dict:
        args = {
            k: tf.constant(v, dtype=tf.string if inputs[k]["dtype"] == "string" else inputs[k]["dtype"])
            for k, v in feed.items()
        }
        return {k: np.asarray(v.numpy()) for k, v in function(**args).items()}

    if feeds is None:
        if heldout is None or len(inputs) != 1:
            raise InputError(f"golden file of {folder}: give the feeds (held-out features fit one-input models only)")
        ((input_name, spec),) = inputs.items()
        feeds = golden.heldout_feeds(np.asarray(heldout, spec["dtype"]), input_name, infer)
    outputs = [infer(call) for feed in feeds for call in feed.calls]
    record = golden.Golden(
        signature=signature,
        inputs=inputs,
        outputs={k: _spec(s) for k, s in sorted(function.structured_outputs.items())},
        feeds=feeds,
        runtimes=[
            golden.GoldenRuntime(
                REFERENCE, "savedmodel", REFERENCE_POLICY, outputs, {"source": str(folder), "signature": signature}
            )
        ],
        reference=REFERENCE,
        origin="export",
        source="heldout+boundary" if heldout is not None else "given",
        model={
            "name": name or folder.resolve().parent.name,
            "version": version if version is not None else folder.name,
            "saved_model_sha256": golden.saved_model_sha256(folder),
            "tflite": golden.tflite_sha256(folder.glob("*.tflite")),
        },
        policies=policies_json(default_policies()),
        environment=golden.environment(),
    )
    return golden.write(record, golden.golden_path(folder, signature))


def _input_specs(function) -> dict[str, dict]:
    args, kwargs = function.structured_input_signature
    return {k: _spec(s) for k, s in sorted({**{s.name: s for s in args}, **kwargs}.items())}


def _spec(spec) -> dict:
    """{"dtype", "shape"} of a tf.TensorSpec: numpy's dtype name or "string"; -1 dynamic, None unknown rank."""
    dtype = "string" if spec.dtype.name == "string" else np.dtype(spec.dtype.as_numpy_dtype).name
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    return {"dtype": dtype, "shape": None if dims is None else [-1 if d is None else d for d in dims]}
