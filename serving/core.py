"""ServerCore: the served models' configuration plus every API at proto level.

The gRPC servicers and the REST layer both call this object. Proto-level
methods (`predict`, `classify`, `regress`, `multi_inference`,
`get_model_metadata`, `get_model_status`, `reload_config`) take and return
tensorflow_serving.apis messages and raise `serving.errors.ServingError`.
`acquire(model_spec)` holds the servable the numpy-level REST predict path
runs (`.run(signature, inputs)`) for the length of a request. Answered
inference calls go to `request_logger` (serving.request_log): the proto-level
methods hand it their own, the transports that answer Predict themselves call
`log_predict` / `log_rest_predict`.
"""

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import inference
from serving.errors import ServingError, invalid_argument
from serving.manager import AVAILABLE, ManagerOptions, ModelManager
from serving.request_log import ServerRequestLogger
from serving.servable import DEFAULT_SIGNATURE, Servable
from serving.tensors import from_numpy

log = logging.getLogger("serving")

TENSORFLOW_PLATFORM = "tensorflow"
SIGNATURE_DEF_FIELD = "signature_def"


@dataclasses.dataclass
class CoreOptions:
    """What ServerCore needs from the command line."""

    manager: ManagerOptions = dataclasses.field(default_factory=ManagerOptions)
    allow_version_labels_for_unavailable_models: bool = False
    enable_serialization_as_tensor_content: bool = False
    enable_signature_method_name_check: bool = False
    saved_model_tags: tuple = ("serve",)  # what request-log records name as the loaded MetaGraph


def _is_relative(path: str) -> bool:
    return "://" not in path and not path.startswith("/")


def validate_config_list(config_list) -> None:
    """ServerCore's checks on a ModelConfigList (INVALID_ARGUMENT)."""
    names = set()
    for config in config_list.config:
        if config.name in names:
            raise invalid_argument(f"Illegal to list model {config.name} multiple times in config list")
        names.add(config.name)
    for config in config_list.config:
        if _is_relative(config.base_path):
            raise invalid_argument(
                f"Expected model {config.name} to have an absolute path or URI; got base_path()={config.base_path}"
            )


def declared_platform(config) -> str:
    """A model's platform from model_platform or the deprecated model_type,
    validated like ServerCore's GetPlatform."""
    if config.model_type:  # deprecated enum field; TENSORFLOW == 1
        if config.model_platform:
            raise invalid_argument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {config.name}"
            )
        if config.model_type != 1:
            raise invalid_argument(f"ModelServerConfig::model_type choice {config.model_type} not supported.")
        return TENSORFLOW_PLATFORM
    if not config.model_platform:
        raise invalid_argument(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {config.name}"
        )
    return config.model_platform


def model_platform(config) -> str:
    """A model's platform, validated like ServerCore's GetPlatform + routing."""
    platform = declared_platform(config)
    if platform != TENSORFLOW_PLATFORM:
        raise invalid_argument(f"Model {config.name} requests unsupported platform {platform}")
    return platform


class ServerCore:
    """The model server minus its transports.

    loader(name, version, path) -> Servable loads (and warms up) one version.
    """

    def __init__(
        self,
        loader: Callable[[str, int, str], Servable],
        options: CoreOptions,
        on_load: Callable[[str, int, bool, str], None] | None = None,
    ):
        self.options = options
        self.manager = ModelManager(loader, options.manager, on_load)
        self._config = model_server_config_pb2.ModelServerConfig()
        self._config_lock = threading.Lock()
        self._labels: dict | None = None  # model -> {label: version}
        self._labels_lock = threading.Lock()
        self.request_logger = ServerRequestLogger(options.saved_model_tags)

    # -- configuration ----------------------------------------------------------
    def reload_config(self, new_config) -> None:
        """ServerCore::ReloadConfig: validate, (re)label, add/update/remove models,
        and wait for newly added models to become available."""
        with self._config_lock:
            current = self._config
            first = current.WhichOneof("config") is None
            if not (
                first
                or current == new_config
                or (
                    current.WhichOneof("config") == "model_config_list"
                    and new_config.WhichOneof("config") == "model_config_list"
                )
            ):
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "Cannot transition to requested config. It is only legal to transition "
                    "from one ModelConfigList to another.",
                )
            kind = new_config.WhichOneof("config")
            if kind is None:
                log.info("Taking no action for empty config.")
                return
            if kind != "model_config_list":
                raise invalid_argument("ModelServer does not yet support custom model config.")
            validate_config_list(new_config.model_config_list)
            # ValidateNoModelsChangePlatforms: platforms compared as GetPlatform
            # resolves them (model_type TENSORFLOW == model_platform "tensorflow").
            old_platforms = {c.name: declared_platform(c) for c in current.model_config_list.config}
            for config in new_config.model_config_list.config:
                old = old_platforms.get(config.name)
                if old is not None and old != declared_platform(config):
                    raise invalid_argument(
                        f"Illegal to change a model's platform. For model {config.name} platform "
                        f"was {old} and new platform requested is {declared_platform(config)}"
                    )
            self._config = model_server_config_pb2.ModelServerConfig()
            self._config.CopyFrom(new_config)
            self._update_labels(new_config.model_config_list)
            log.info("Adding/updating models.")
            configs = list(new_config.model_config_list.config)
            for config in configs:
                model_platform(config)
                log.info(" (Re-)adding model: %s", config.name)
            new_models = self.manager.set_models(configs)
            self.manager.wait_until_available(new_models, self.options.manager.file_system_poll_wait_seconds)
            log.info("Finished adding/updating models")
            # After the models, as ServerCore::MaybeUpdateServerRequestLogger.
            self.request_logger.update(configs)
            log.info("Finished reloading config")

    def _update_labels(self, config_list) -> None:
        """ServerCore::UpdateModelVersionLabelMap (runs before models are (re)added)."""
        new_map = {}
        for config in config_list.config:
            states = self.manager.version_states(config.name)
            for label, version in config.version_labels.items():
                allow = False
                if self.options.allow_version_labels_for_unavailable_models:
                    existing = (self._labels or {}).get(config.name, {}).get(label)
                    allow = existing is None or existing == version
                state = states.get(version)
                if not allow and (state is None or state.state != AVAILABLE):
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {config.name}, "
                        "which is not currently available for inference",
                    )
                new_map.setdefault(config.name, {})[label] = version
        with self._labels_lock:
            self._labels = new_map

    def model_names(self) -> list:
        """Names of the configured models."""
        return self.manager.model_names()

    # -- servable lookup ----------------------------------------------------------
    def _version_for(self, name: str, version: int | None, label: str | None) -> int | None:
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        if label is None:
            return version
        with self._labels_lock:
            if self._labels is None:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, f"Model labels does not init yet.{label}")
            found = self._labels.get(name, {}).get(label)
        if found is None:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return found

    def _spec_version(self, model_spec):
        choice = model_spec.WhichOneof("version_choice")
        version = model_spec.version.value if choice == "version" else None
        label = model_spec.version_label if choice == "version_label" else None
        return self._version_for(model_spec.name, version, label)

    @contextlib.contextmanager
    def acquire(self, model_spec) -> Iterator[Servable]:
        """Hold the servable a ModelSpec addresses for the length of a request."""
        with self.manager.acquire(model_spec.name, self._spec_version(model_spec)) as servable:
            yield servable

    # -- PredictionService --------------------------------------------------------
    def take(self, model_spec) -> Servable:
        """acquire() without its context managers, for the hottest path: the
        caller must release() the servable."""
        return self.manager.take(model_spec.name, self._spec_version(model_spec))

    def predict(self, request):
        """PredictionService.Predict."""
        servable = self.take(request.model_spec)
        try:
            response = inference.predict(servable, request, self.options.enable_serialization_as_tensor_content)
        finally:
            servable.release()
        self.log_predict(request, response)
        return response

    def classify(self, request):
        """PredictionService.Classify."""
        with self.acquire(request.model_spec) as servable:
            response = inference.classify(servable, request, self.options.enable_signature_method_name_check)
        self.request_logger.log(request.model_spec.name, "classify_log", request, response)
        return response

    def regress(self, request):
        """PredictionService.Regress."""
        with self.acquire(request.model_spec) as servable:
            response = inference.regress(servable, request, self.options.enable_signature_method_name_check)
        self.request_logger.log(request.model_spec.name, "regress_log", request, response)
        return response

    def multi_inference(self, request):
        """PredictionService.MultiInference (the first task's ModelSpec picks the servable)."""
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        with self.acquire(spec) as servable:
            response = inference.multi_inference(servable, request, self.options.enable_signature_method_name_check)
        self.request_logger.log(spec.name, "multi_inference_log", request, response)
        return response

    def log_predict(self, request, response) -> None:
        """Hand an answered Predict to the request log (a no-op unless its model logs)."""
        self.request_logger.log(request.model_spec.name, "predict_log", request, response)

    def log_rest_predict(self, model_spec, signature_name: str, inputs: dict, outputs: dict, version: int) -> None:
        """Hand an answered REST predict (numpy inputs and outputs) to the request log; its
        PredictRequest/PredictResponse are built on the writer thread, as TF Serving's REST
        handler would have converted them."""
        self.request_logger.log(
            model_spec.name,
            "predict_log",
            (model_spec, signature_name, inputs),
            (version, outputs),
            self._rest_predict_protos,
        )

    def _rest_predict_protos(self, request_parts, response_parts) -> tuple:
        (model_spec, signature_name, inputs), (version, outputs) = request_parts, response_parts
        request = predict_pb2.PredictRequest()
        request.model_spec.CopyFrom(model_spec)
        request.model_spec.signature_name = signature_name
        for alias, value in inputs.items():
            from_numpy(value, False, out=request.inputs[alias])  # JSON becomes typed values, not tensor_content
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model_spec.name
        response.model_spec.signature_name = signature_name or DEFAULT_SIGNATURE
        response.model_spec.version.value = version
        for alias, value in outputs.items():
            from_numpy(value, self.options.enable_serialization_as_tensor_content, out=response.outputs[alias])
        return request, response

    def get_model_metadata(self, request):
        """PredictionService.GetModelMetadata (signature_def only, as TF Serving)."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        with self.acquire(request.model_spec) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in servable.signature_defs.items():
                signatures.signature_def[key].CopyFrom(signature)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
            return response

    # -- ModelService -------------------------------------------------------------
    def get_model_status(self, request):
        """ModelService.GetModelStatus."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        spec = request.model_spec
        states = self.manager.version_states(spec.name)
        response = get_model_status_pb2.GetModelStatusResponse()
        if spec.WhichOneof("version_choice") == "version":
            version = spec.version.value
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {spec.name}")
            selected = {version: states[version]}
        else:
            if not states:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
            selected = states
        for version in sorted(selected, reverse=True):  # ServableStateMonitor's order
            state = selected[version]
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = state.state
            entry.status.error_code = state.code.value[0]
            entry.status.error_message = state.message
        return response

    def handle_reload_config_request(self, request) -> model_management_pb2.ReloadConfigResponse:
        """ModelService.HandleReloadConfigRequest; ServingError when the reload fails."""
        config = request.config
        if config.WhichOneof("config") != "model_config_list":
            error = invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        else:
            for index, model in enumerate(config.model_config_list.config):
                log.info(
                    "\nConfig entry\n\tindex : %d\n\tpath : %s\n\tname : %s\n\tplatform : %s",
                    index,
                    model.base_path,
                    model.name,
                    model.model_platform,
                )
            try:
                self.reload_config(config)
                return model_management_pb2.ReloadConfigResponse()
            except ServingError as exc:
                error = exc
        log.error("ReloadConfig failed: %s", error.message)
        raise error

    def stop(self) -> None:
        """Write the request logs' queued records, then unload every model."""
        self.request_logger.close()
        self.manager.stop()
