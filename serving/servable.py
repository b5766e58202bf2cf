"""Loaded model versions: a SavedModel run through a TF session, or a TFLite model.

A servable is one version of one model. It knows its signatures (SignatureDef
protos, exactly what GetModelMetadata returns) and runs them:
`run(signature, inputs, output_filter)` is the Predict path with TF Serving's
validation and messages; `run_aliases` / `run_tensors` are the lower levels
the Classify/Regress/MultiInference code uses. SavedModels are loaded the way
TF Serving loads them (a graph session over the MetaGraphDef with the given
tags), so TF1 and TF2 exports, stateful models and output pruning behave alike.
"""

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np
from tensorflow.core.protobuf import config_pb2

from serving.batching import Done
from serving.errors import ServingError, failed_precondition, invalid_argument
from serving.inflight import InFlight
from serving.tensors import data_type_of, dtype_name

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
TFLITE_FILE = "model.tflite"


class LoadError(ServingError):
    """A version failed to load; `code` is the canonical status code."""


def _status_from_tf_error(exc) -> ServingError:
    """A TensorFlow OpError as a ServingError with the same code and text."""
    code = _GRPC_CODES.get(getattr(exc, "error_code", 2), grpc.StatusCode.UNKNOWN)
    return ServingError(code, getattr(exc, "message", str(exc)))


_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _sorted_keys(mapping) -> str:
    return ",".join(sorted(mapping))


class _Plan:
    """What running one signature needs, worked out once per version rather than
    per request (the Predict path is Python the GIL serialises)."""

    __slots__ = ("signature", "inputs", "dtypes", "outputs", "tensor_names", "output_names")

    def __init__(self, signature):
        self.signature = signature
        self.inputs = frozenset(signature.inputs)  # compares equal to a dict's keys()
        self.dtypes = {alias: info.dtype for alias, info in signature.inputs.items()}
        self.outputs = sorted(signature.outputs)
        self.tensor_names = {alias: info.name for alias, info in signature.inputs.items()}
        self.output_names = {alias: info.name for alias, info in signature.outputs.items()}


class Servable:
    """One loaded version of one model (abstract: see the two loaders below)."""

    def __init__(self, name: str, version: int, path: str, signature_defs: dict):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs
        self.batcher = None
        self.method_name_check = False  # --enable_signature_method_name_check
        self._users = InFlight()
        self._plans: dict = {}  # signature name -> _Plan, built on first use

    def take(self) -> "Servable":
        """Mark a request as using this version (unload waits for it) until release()."""
        self._users.add()
        return self

    def release(self) -> None:
        """End a take()."""
        self._users.done()

    @contextlib.contextmanager
    def hold(self):
        """take() for the length of a `with` block."""
        self.take()
        try:
            yield self
        finally:
            self.release()

    def wait_idle(self) -> None:
        """Block until no request uses this version."""
        self._users.wait_idle()

    # -- the Predict path (also what REST and batching use) --------------------
    def signature(self, signature_name: str):
        """The SignatureDef, or FAILED_PRECONDITION as TF Serving's Predict says."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        try:
            return self.signature_defs[signature_name]
        except KeyError:
            raise failed_precondition(f'Serving signature key "{signature_name}" not found.') from None

    def plan(self, signature_name: str) -> "_Plan":
        """The signature's _Plan (FAILED_PRECONDITION as signature() when there is none)."""
        plan = self._plans.get(signature_name)
        if plan is None:
            plan = self._plans[signature_name] = _Plan(self.signature(signature_name))
        return plan

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()) -> dict:
        """Run a signature on numpy inputs keyed by alias; outputs keyed by alias.

        Validates exactly like TF Serving's Predict, in its order (signature,
        input names, output_filter, dtypes) and raises ServingError with its
        messages. The caller holds this servable (take() or hold()), so an
        unload waits for the run.
        """
        return self.start(signature_name, inputs, output_filter).result()

    def start(self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()):
        """run() for callers that must not block on a batch: validate, then run
        now (unbatched) or queue the inputs with the batcher. Returns an object
        whose `result()` gives the outputs and whose `add_done_callback(fn)`
        calls fn() once they are ready (serving.batching.Done / its queue's)."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        plan = self.plan(signature_name)
        signature = plan.signature
        if self.method_name_check:
            self._check_method(signature)
        if inputs.keys() != plan.inputs:
            self.check_input_set(signature, inputs)
            inputs = self._with_defaults(signature, inputs)
        aliases = self._output_aliases(signature, output_filter) if output_filter else plan.outputs
        for index, alias in enumerate(sorted(inputs)):  # the session's own check, last
            expected = plan.dtypes[alias]
            got = data_type_of(inputs[alias])
            if expected != got:
                raise invalid_argument(
                    f"Expects arg[{index}] to be {dtype_name(expected)} but {dtype_name(got)} is provided"
                )
        if self.batcher is not None:
            key = (self.name, self.version, signature_name, tuple(aliases))
            return self.batcher.submit(
                key, dict(inputs), lambda merged: self.run_aliases(signature_name, merged, aliases)
            )
        return Done(self.run_aliases(signature_name, inputs, aliases))

    @staticmethod
    def _check_method(signature) -> None:
        if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                "Expected prediction signature method_name to be one of {"
                f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. "
                f"Was: {signature.method_name}",
            )

    @staticmethod
    def check_input_set(signature, inputs: Mapping) -> None:
        """INVALID_ARGUMENT unless the input aliases fit the signature (Predict's messages)."""
        sent, wanted = set(inputs), set(signature.inputs)
        if len(sent) > len(wanted) or (len(sent) < len(wanted) and not signature.defaults):
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{_sorted_keys(sent)}}}) != len({{{_sorted_keys(wanted)}}}). "
                f"Sent extra: {{{_sorted_keys(sent - wanted)}}}. "
                f"Missing but required: {{{_sorted_keys(wanted - sent)}}}."
            )
        for alias in sorted(sent):
            if alias not in signature.inputs:
                raise invalid_argument(
                    f"input tensor alias not found in signature: {alias}. "
                    f"Inputs expected to be in the set {{{_sorted_keys(wanted)}}}."
                )

    @staticmethod
    def _with_defaults(signature, inputs: Mapping) -> Mapping:
        """Missing inputs that have a signature default take it (GetInputValues)."""
        missing = [alias for alias in signature.defaults if alias not in inputs]
        if not missing:
            return inputs
        from serving.tensors import to_numpy

        return {**inputs, **{alias: to_numpy(signature.defaults[alias]) for alias in missing}}

    @staticmethod
    def _output_aliases(signature, output_filter: Sequence[str]) -> list:
        if not output_filter:
            return sorted(signature.outputs)
        seen = []
        for alias in output_filter:
            if alias not in signature.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{_sorted_keys(signature.outputs)}}}."
                )
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen

    # -- lower levels ----------------------------------------------------------
    def run_aliases(self, signature_name: str, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]) -> dict:
        """Run with inputs/outputs by alias, without validation."""
        plan = self.plan(signature_name or DEFAULT_SIGNATURE)
        tensor_names = plan.tensor_names
        feeds = {tensor_names[alias]: value for alias, value in inputs.items()}
        fetched = self.run_tensors(feeds, [plan.output_names[a] for a in output_aliases])
        return dict(zip(output_aliases, fetched))

    def run_tensors(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list:
        """Run the model with feeds and fetches by runtime tensor name."""
        raise NotImplementedError

    def unload(self) -> None:
        """Release the runtime's resources."""


class SavedModelServable(Servable):
    """A SavedModel in a graph session, as TF Serving's SavedModelBundle."""

    def __init__(self, name: str, version: int, path: str, tags: Sequence[str], session_config=None):
        import tensorflow as tf

        if not (Path(path, "saved_model.pb").is_file() or Path(path, "saved_model.pbtxt").is_file()):
            raise LoadError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                f"{path}. Check that the directory exists and that you have the right "
                f"permissions for accessing it.",
            )
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(self._session, list(tags), path)
        except RuntimeError:  # no MetaGraph with these tags; worded as TF's C++ loader
            self._session.close()
            raise LoadError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}. "
                "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
                "`saved_model_cli`",
            ) from None
        except tf.errors.OpError as exc:
            self._session.close()
            raise LoadError(_status_from_tf_error(exc).code, exc.message) from None
        except (OSError, ValueError) as exc:
            self._session.close()
            if "Cannot parse file" in str(exc):  # a corrupt saved_model.pb, as TF's C++ reader says
                raise LoadError(
                    grpc.StatusCode.DATA_LOSS, f"Can't parse {Path(path, 'saved_model.pb')} as binary proto"
                ) from None
            raise LoadError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        super().__init__(name, version, path, dict(meta_graph.signature_def))
        self._callables: dict = {}
        self._lock = threading.Lock()
        self._op_error = tf.errors.OpError
        self._callable_options = config_pb2.CallableOptions

    def run_tensors(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list:
        """Run the session: feeds and fetches by graph tensor name."""
        feed_names = tuple(feeds)
        key = (feed_names, tuple(fetches))
        fn = self._callables.get(key)
        if fn is None:
            with self._lock:
                fn = self._callables.get(key)
                if fn is None:
                    options = self._callable_options()
                    options.feed.extend(feed_names)
                    options.fetch.extend(fetches)
                    try:
                        # Session.make_callable would add a Python-side shape
                        # check the C++ session (and so TF Serving) does not have.
                        fn = self._session._make_callable_from_options(options)
                    except self._op_error as exc:
                        raise _status_from_tf_error(exc) from None
                    self._callables[key] = fn
        try:
            return fn(*(feeds[name] for name in feed_names))
        except self._op_error as exc:
            raise _status_from_tf_error(exc) from None

    def unload(self) -> None:
        self._callables.clear()
        self._session.close()


class TfLiteServable(Servable):
    """`model.tflite` run by LiteRT interpreters (--prefer_tflite_model).

    A pool of `num_interpreters` interpreters (TF Serving sizes it with
    --num_tflite_pools) serves that many requests at once.
    """

    def __init__(self, name: str, version: int, path: str, num_interpreters: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        from serving import tflite_signatures

        model_path = os.path.join(path, TFLITE_FILE)
        try:
            content = Path(model_path).read_bytes()
            interpreters = [Interpreter(model_content=content) for _ in range(max(1, num_interpreters))]
            for interpreter in interpreters:
                interpreter.allocate_tensors()
            signature_defs, self._index_of = tflite_signatures.signature_defs(content, interpreters[0])
        except (OSError, ValueError, RuntimeError) as exc:
            raise LoadError(
                grpc.StatusCode.INVALID_ARGUMENT, f"Failed to load TFLite model {model_path}: {exc}"
            ) from None
        super().__init__(name, version, path, signature_defs)
        self._pool: queue.Queue = queue.Queue()
        for interpreter in interpreters:
            self._pool.put(interpreter)

    def run_tensors(self, feeds, fetches):
        try:
            feeds = [(self._index_of[name], value) for name, value in feeds.items()]
            fetch_indices = [self._index_of[name] for name in fetches]
        except KeyError as exc:
            raise invalid_argument(f"Unknown tensor '{exc.args[0]}'.") from None
        interpreter = self._pool.get()
        try:
            current = {d["index"]: tuple(d["shape"]) for d in interpreter.get_input_details()}
            resized = [(i, v) for i, v in feeds if current[i] != v.shape]
            # TF Serving's TfLiteSession resizes inputs to whatever batch arrives.
            for index, value in resized:
                interpreter.resize_tensor_input(index, value.shape, strict=False)
            if resized:
                interpreter.allocate_tensors()
            for index, value in feeds:
                interpreter.set_tensor(index, value)
            interpreter.invoke()
            return [interpreter.get_tensor(index).copy() for index in fetch_indices]
        except (ValueError, RuntimeError) as exc:
            raise invalid_argument(str(exc)) from None
        finally:
            self._pool.put(interpreter)


def load_servable(
    name: str,
    version: int,
    path: str,
    *,
    tags: Sequence[str],
    prefer_tflite: bool,
    num_tflite_interpreters: int,
    session_config=None,
) -> Servable:
    """Load one version: model.tflite when preferred and present, else the SavedModel."""
    import tensorflow as tf

    # TensorFlow's Python warnings (deprecations, retracing) are not server log lines.
    tf.get_logger().setLevel(logging.ERROR)
    if prefer_tflite and os.path.isfile(os.path.join(path, TFLITE_FILE)):
        return TfLiteServable(name, version, path, num_tflite_interpreters)
    return SavedModelServable(name, version, path, tags, session_config)
