"""Edge readiness of a TFLite file: what an edge team needs before shipping it.

File size, the ops it uses (and whether any needs the Flex / select-TF-ops
delegate that edge runtimes usually lack), its quantization kind (all three
read from the flatbuffer by `toolkit.artifacts.flatbuffer.tflite_facts`), input
and output dtypes with quantization parameters, and latency per row measured
in the LiteRT interpreter.
"""

from __future__ import annotations

import time

import numpy as np

# The check reads a file's facts through this module, with the rest of its device view.
from toolkit.artifacts.flatbuffer import tflite_facts as model_facts
from toolkit.parity.runners.base import feed_rows, take_rows


def io_details(runner) -> dict:
    """Input/output dtypes, shapes and quantization parameters of a started TFLiteRunner."""

    def describe(details: dict) -> list[dict]:
        out = []
        for name, d in sorted(details.items()):
            q = d.get("quantization_parameters", {})
            scales = [float(s) for s in q.get("scales", [])]
            out.append(
                {
                    "name": name,
                    "dtype": np.dtype(d["dtype"]).name,
                    "shape": [int(x) for x in d.get("shape_signature", d["shape"])],
                    "quantization": {"scales": scales, "zero_points": [int(z) for z in q.get("zero_points", [])]}
                    if scales
                    else None,
                }
            )
        return out

    inputs, outputs = runner.tensor_details
    return {"inputs": describe(inputs), "outputs": describe(outputs)}


def latency(runner, feed: dict, repeats: int = 5) -> dict:
    """Best-of-`repeats` wall time of one call with `feed` and of a one-row call, per row."""
    row_inputs = runner.signature.row_inputs

    def best(f) -> float:
        runner.infer(f)  # the first call allocates tensors for this shape
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            runner.infer(f)
            times.append(time.perf_counter() - start)
        return min(times)

    batch = best(feed)
    rows = feed_rows(feed, row_inputs)
    if rows is None:
        # A fixed-shape signature has no batch: one call is one row.
        return {"batch_rows": 1, "us_per_row_batched": batch * 1e6, "us_single_row": batch * 1e6}
    single = best(take_rows(feed, row_inputs, 0, 1))
    return {"batch_rows": rows, "us_per_row_batched": batch / max(rows, 1) * 1e6, "us_single_row": single * 1e6}


def edge_report(runner, feed: dict | None) -> dict:
    """Everything above for one started TFLiteRunner; latency needs a batchable feed."""
    facts = model_facts(runner.path)
    facts.update(io_details(runner))
    facts["latency"] = latency(runner, feed) if feed is not None else None
    return facts
