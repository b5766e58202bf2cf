"""Model versions on disk -> loaded servables, with TF Serving's lifecycle.

One `ModelManager` plays the parts of TF Serving's FileSystemStoragePathSource
(poll each base path, keep only integer-named version folders, apply the
version policy), AspiredVersionsManager with the AvailabilityPreservingPolicy
(load new versions, with retries, before unloading old ones; a version that
fails never disturbs the ones serving) and ServableStateMonitor (the states
GetModelStatus reports, including failed and unloaded versions).
"""

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from serving import metrics
from serving.errors import ServingError, not_found
from serving.servable import LoadError, Servable

log = logging.getLogger("serving")

# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto).
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50


def servable_id(name: str, version: int) -> str:
    """TF Serving's ServableId::DebugString."""
    return f"{{name: {name} version: {version}}}"


@dataclasses.dataclass
class VersionState:
    """What GetModelStatus reports for one version."""

    state: int
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""


@dataclasses.dataclass
class ManagerOptions:
    """Load behaviour (the binary's --max_num_load_retries etc.)."""

    max_num_load_retries: int = 5
    load_retry_interval_s: float = 60.0
    file_system_poll_wait_seconds: int = 1


def _version_folders(base_path: str) -> dict:
    """Integer-named subfolders of base_path -> their paths (OSError if unreadable).

    base_path is a local path or a file:// URI (other filesystems are not supported).
    """
    if base_path.startswith("file://"):
        base_path = base_path[len("file://") :]
    elif "://" in base_path:
        raise OSError(f"unsupported file system scheme in {base_path}")
    found = {}
    for entry in os.scandir(base_path):
        if not entry.is_dir() or not entry.name.isdigit():
            continue
        version = int(entry.name)
        if version in found:
            log.warning(
                "Duplicate version directories detected. Version %d will be loaded from %s, %s will be ignored.",
                version,
                entry.path,
                found[version],
            )
        found[version] = entry.path
    return found


def aspired_versions(model_config, on_disk: dict) -> list:
    """Versions the model's version policy selects among those on disk."""
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return sorted(on_disk)
    if choice == "specific":
        wanted = sorted(set(policy.specific.versions))
        for version in wanted:
            if version not in on_disk:
                log.warning(
                    "Version %d of servable %s, which was requested to be served as a "
                    "'specific' version in the servable's version policy, was not found "
                    "in the file system",
                    version,
                    model_config.name,
                )
        return [v for v in wanted if v in on_disk]
    num = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return sorted(on_disk)[-num:]


class ModelManager:
    """Loads, serves and unloads the versions of the configured models.

    loader(name, version, path) -> Servable builds and warms up one version,
    raising LoadError (or any exception) when it cannot.
    on_load(name, version, ok, path) is called after every load attempt sequence.
    """

    def __init__(
        self,
        loader: Callable[[str, int, str], Servable],
        options: ManagerOptions,
        on_load: Callable[[str, int, bool, str], None] | None = None,
    ):
        self._loader = loader
        self._options = options
        self._on_load = on_load
        self._lock = threading.Lock()
        self._pass_lock = threading.Lock()  # one poll pass at a time
        self._configs: dict = {}
        self._serving: dict = {}  # name -> {version: Servable}
        self._states: dict = {}  # name -> {version: VersionState}
        self._failed: set = set()  # (name, version) whose load ended in error
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None

    # -- configuration and polling --------------------------------------------
    def set_models(self, model_configs: list) -> list:
        """Make these the served models, poll once, and return the new names."""
        with self._lock:
            new = [c.name for c in model_configs if c.name not in self._configs]
            self._configs = {c.name: c for c in model_configs}
        self.poll()
        return new

    def poll(self) -> None:
        """One pass: reconcile every model (and every removed one) with the disk."""
        with self._pass_lock:
            with self._lock:
                configs = dict(self._configs)
                removed = [n for n in self._serving if n not in configs]
            for name in removed:
                self._reconcile(name, None, [])
            for name, config in configs.items():
                if self._stopping.is_set():
                    return
                try:
                    on_disk = _version_folders(config.base_path)
                except OSError as exc:
                    log.error(
                        "FileSystemStoragePathSource encountered a filesystem access error: "
                        "Could not find base path %s for servable %s with error %s",
                        config.base_path,
                        name,
                        exc.strerror or exc,
                    )
                    continue
                aspired = aspired_versions(config, on_disk)
                if not aspired:
                    log.warning(
                        "No versions of servable %s found under base path %s. Did you "
                        "forget to name your leaf directory as a number (eg. '/1/')?",
                        name,
                        config.base_path,
                    )
                self._reconcile(name, on_disk, aspired)
            metrics.record_poll("file_system")

    def wait_until_available(self, names: list, poll_wait: float) -> None:
        """Block until each model's latest aspired version is AVAILABLE or has failed.

        Raises ServingError(UNKNOWN) listing the models that failed, as
        ServerCore's initial load does.
        """
        while True:
            pending, failed = [], []
            with self._lock:
                for name in names:
                    states = self._states.get(name, {})
                    if not states:
                        pending.append(name)
                        continue
                    latest = max(states)
                    state = states[latest]
                    if state.state == END and state.code != grpc.StatusCode.OK:
                        failed.append((name, latest, state))
                    elif not any(s.state == AVAILABLE for s in states.values()):
                        pending.append(name)
            if not pending:
                break
            if self._stopping.wait(max(poll_wait, 0.2)):
                return
            self.poll()
        if failed:
            detail = "".join(
                f"{{{servable_id(n, v)} due to error: {s.code.name}: {s.message}}}, " for n, v, s in failed
            )
            raise ServingError(
                grpc.StatusCode.UNKNOWN, f"{len(failed)} model(s) did not become available: {{{detail}}}"
            )

    def start_polling(self) -> None:
        """Re-poll the base paths every --file_system_poll_wait_seconds (if > 0)."""
        wait = self._options.file_system_poll_wait_seconds
        if wait <= 0 or self._poller is not None:
            return

        def loop():
            while not self._stopping.wait(wait):
                try:
                    self.poll()
                except Exception:  # keep polling; a bad pass must not kill the server
                    log.exception("File system poll failed")

        self._poller = threading.Thread(target=loop, name="fs-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop polling and unload everything."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(10)
        with self._pass_lock:
            for name in list(self._serving):
                for version in list(self._serving.get(name, {})):
                    self._unload(name, version, "the server is stopping")

    # -- lookups --------------------------------------------------------------
    def take(self, name: str, version: int | None) -> Servable:
        """A serving version (the latest when version is None), taken (Servable.take)
        for a request that must release() it."""
        with self._lock:
            versions = self._serving.get(name, {})
            servable = versions.get(version) if version is not None else (versions[max(versions)] if versions else None)
            if servable is None:
                request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
                raise not_found(f"Servable not found for request: {request}")
            return servable.take()  # under the lock, so unload cannot slip in between

    @contextlib.contextmanager
    def acquire(self, name: str, version: int | None) -> Iterator[Servable]:
        """take() for the length of a `with` block."""
        servable = self.take(name, version)
        try:
            yield servable
        finally:
            servable.release()

    def version_states(self, name: str) -> dict:
        """version -> VersionState, every version this model ever had."""
        with self._lock:
            return dict(self._states.get(name, {}))

    def model_names(self) -> list:
        """Names of the configured models."""
        with self._lock:
            return list(self._configs)

    # -- internals ------------------------------------------------------------
    def _set_state(self, name, version, state, code=grpc.StatusCode.OK, message=""):
        with self._lock:
            self._states.setdefault(name, {})[version] = VersionState(state, code, message)

    def _reconcile(self, name: str, on_disk: dict | None, aspired: list) -> None:
        with self._lock:
            serving = set(self._serving.get(name, {}))
            # A failed version is retried only after it stops being aspired.
            self._failed = {(n, v) for n, v in self._failed if n != name or v in aspired}
            to_load = [v for v in aspired if v not in serving and (name, v) not in self._failed]
        for version in to_load:
            if self._stopping.is_set():
                return
            self._load(name, version, on_disk[version])
        with self._lock:
            serving = set(self._serving.get(name, {}))
        # Availability preserving: drop unaspired versions only once an aspired
        # one serves, or when nothing is aspired at all (model or folders removed).
        if aspired and not serving.intersection(aspired):
            return
        if on_disk is None:
            reason = "the model left the config"
        elif aspired:
            reason = f"the version policy now serves {', '.join(map(str, aspired))}"
        elif on_disk:
            reason = "the version policy selects none of the versions on disk"
        else:
            reason = "no version folder left on disk"
        for version in sorted(serving - set(aspired)):
            self._unload(name, version, reason)

    def _load(self, name: str, version: int, path: str) -> None:
        ident = servable_id(name, version)
        self._set_state(name, version, START)
        self._set_state(name, version, LOADING)
        attempts = 1 + max(0, self._options.max_num_load_retries)
        for attempt in range(1, attempts + 1):
            log.debug("Loading servable version %s from %s", ident, path)
            try:
                servable = self._loader(name, version, path)
            except LoadError as exc:
                code, message = exc.code, exc.message
            except ServingError as exc:  # e.g. a failing warmup request
                code, message = exc.code, exc.message
            except Exception as exc:  # any other loader failure is still just a failed load
                code, message = grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"
            else:
                with self._lock:
                    self._serving.setdefault(name, {})[version] = servable
                self._set_state(name, version, AVAILABLE)
                log.info("Successfully loaded servable version %s from %s", ident, path)
                if self._on_load:
                    self._on_load(name, version, True, path)
                return
            if attempt < attempts:
                log.warning(
                    "Loading servable version %s failed (attempt %d of %d), retrying: %s: %s",
                    ident,
                    attempt,
                    attempts,
                    code.name,
                    message,
                )
                interval = self._options.load_retry_interval_s
                if interval > 0 and self._stopping.wait(interval):
                    break
        with self._lock:
            self._failed.add((name, version))
        self._set_state(name, version, END, code, message)
        log.error("Encountered an error for servable version %s: %s: %s", ident, code.name, message)
        if self._on_load:
            self._on_load(name, version, False, path)

    def _unload(self, name: str, version: int, reason: str) -> None:
        ident = servable_id(name, version)
        with self._lock:
            servable = self._serving.get(name, {}).pop(version, None)
            if not self._serving.get(name):
                self._serving.pop(name, None)
        if servable is None:
            return
        self._set_state(name, version, UNLOADING)
        log.debug("Unloading servable version %s", ident)
        # Requests already using this version finish on it; callers that
        # resolved it just before it left the map get a moment to start.
        servable.wait_idle()
        time.sleep(0.1)
        servable.wait_idle()
        servable.unload()
        self._set_state(name, version, END)
        log.info("Done unloading servable version %s (%s)", ident, reason)
