"""Find a real ComfyUI checkout and drive it, in-process or as a server, for the host tests.

Two hosts:
- InProcessComfy imports ComfyUI into the test process and runs prompts through the real
  execution.validate_prompt and execution.PromptExecutor (no HTTP).
- ComfyServer starts ComfyUI's main.py on a loopback port with a throw-away base directory
  and talks to it over HTTP, the way a user's frontend does.

Both load this pack as a custom node plus the test-only nodes in custom_nodes_for_tests/,
and use the tiny random-weight models of tiny_models.py. Nothing of ComfyUI is copied here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import tiny_models

HOST_TESTS_DIR = Path(__file__).resolve().parent
PACK_ROOT = HOST_TESTS_DIR.parents[1]
# ComfyServer talks HTTP through the command-line runner's client (cli/longvideo_cli/comfy_http.py).
sys.path.append(str(PACK_ROOT / "cli"))
from longvideo_cli.comfy_http import ComfyHttp, HttpError, ServerUnreachable  # noqa: E402

PACK_DIR_NAME = "ComfyUI-LongVideo"
TEST_NODES_MODULE = HOST_TESTS_DIR / "custom_nodes_for_tests" / "longvideo_test_nodes.py"
MINIMUM_COMFYUI_VERSION = (0, 33, 0)

USUAL_COMFYUI_LOCATIONS = (
    Path.home() / "ComfyUI",
    Path.home() / "comfy" / "ComfyUI",
    Path.home() / "Documents" / "ComfyUI",
    Path("/opt/ComfyUI"),
)

SKIP_REASON = (
    "ComfyUI was not found (looked at $COMFYUI_PATH, ~/ComfyUI, ~/comfy/ComfyUI, "
    "~/Documents/ComfyUI and /opt/ComfyUI): set COMFYUI_PATH to a ComfyUI checkout "
    f"(>= {'.'.join(map(str, MINIMUM_COMFYUI_VERSION))}; older ones are passed over) to run the host tests."
)

TINY_MODEL_FILES = tiny_models.TINY_MODEL_FILES


# ---------------------------------------------------------------------------------------------
# Finding ComfyUI
# ---------------------------------------------------------------------------------------------


def find_comfyui() -> Path | None:
    """The ComfyUI checkout to test against: $COMFYUI_PATH first, then the usual places."""
    candidates = [Path(os.environ["COMFYUI_PATH"]).expanduser()] if os.environ.get("COMFYUI_PATH") else []
    candidates += USUAL_COMFYUI_LOCATIONS
    for candidate in candidates:
        if is_usable_comfyui(candidate):
            return candidate.resolve()
    return None


def is_usable_comfyui(path: Path) -> bool:
    looks_like_comfyui = (path / "main.py").is_file() and (path / "nodes.py").is_file() and (path / "comfy").is_dir()
    return looks_like_comfyui and comfyui_version(path) >= MINIMUM_COMFYUI_VERSION


def comfyui_version(path: Path) -> tuple[int, ...]:
    """Version from comfyui_version.py; a checkout without one is assumed recent."""
    try:
        text = (path / "comfyui_version.py").read_text()
    except OSError:
        return (999,)
    match = re.search(r'__version__\s*=\s*"(\d+)\.(\d+)\.(\d+)', text)
    return tuple(int(part) for part in match.groups()) if match else (999,)


# ---------------------------------------------------------------------------------------------
# Importing ComfyUI into this process
# ---------------------------------------------------------------------------------------------


def prepare_comfy_imports(comfy_dir: Path) -> None:
    """Make `import nodes`, `comfy`, `folder_paths`, ... resolve to comfy_dir, set up for CPU.

    Must run before anything imports comfy.model_management, which reads the CLI args at import.
    """
    comfy_dir = Path(comfy_dir).resolve()
    _remove_pack_root_from_sys_path()
    if not sys.path or Path(sys.path[0]).resolve() != comfy_dir:
        sys.path.insert(0, str(comfy_dir))
    _evict_modules_shadowing(comfy_dir)

    from comfy.cli_args import args  # parsed from [] because ComfyUI's argv parsing stays off

    args.cpu = True
    args.disable_api_nodes = True
    args.use_pytorch_cross_attention = True
    # nodes.py puts ComfyUI/comfy first on sys.path; after that `utils.*` would resolve to
    # comfy/utils.py, so ComfyUI's own `utils` package must be imported before nodes (as main.py does).
    import utils.extra_config  # noqa: F401
    import utils.install_util  # noqa: F401


def _remove_pack_root_from_sys_path() -> None:
    # The pack root holds a `nodes/` package; on sys.path it could shadow ComfyUI's nodes.py.
    sys.path[:] = [entry for entry in sys.path if Path(entry or os.getcwd()).resolve() != PACK_ROOT]


def _evict_modules_shadowing(comfy_dir: Path) -> None:
    """Forget modules imported from elsewhere under a name that ComfyUI's top level defines."""
    for name in _top_level_module_names(comfy_dir):
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if module is None or (origin and Path(origin).resolve().is_relative_to(comfy_dir)):
            continue
        for loaded in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
            del sys.modules[loaded]


def _top_level_module_names(comfy_dir: Path) -> set[str]:
    modules = {path.stem for path in comfy_dir.glob("*.py")} - {"main"}  # main.py only runs as a script
    packages = {path.parent.name for path in comfy_dir.glob("*/__init__.py")}
    return {name for name in modules | packages if not name.startswith("test")}


def build_tiny_models(models_dir: Path, comfy_dir: Path | None = None) -> dict[str, Path]:
    """Build (or reuse) the tiny models under models_dir; returns {role: path}. See tiny_models.py."""
    comfy_dir = comfy_dir or find_comfyui()
    if comfy_dir is None:
        raise RuntimeError(SKIP_REASON)
    prepare_comfy_imports(comfy_dir)
    return tiny_models.build_tiny_models(models_dir)


class _SilentServer:
    """The part of server.PromptServer that PromptExecutor talks to; messages are kept, not sent."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


class _LogCollector(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class InProcessComfy:
    """ComfyUI imported into the test process; create one per session (its node registry is global).

    base_dir receives output/, input/, temp/ and user/; the model folders point at models_dir,
    which must already hold the tiny models (build_tiny_models).
    """

    def __init__(self, comfy_dir: Path, base_dir: Path, models_dir: Path):
        self.comfy_dir = Path(comfy_dir).resolve()
        self.base_dir = Path(base_dir)
        self.models_dir = Path(models_dir)
        prepare_comfy_imports(self.comfy_dir)
        self._point_folders_at_temp_dirs()

        import execution

        import nodes

        self.builtin_import_failures: list[str] = asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        builtin_nodes = set(nodes.NODE_CLASS_MAPPINGS)
        self.import_errors: dict[str, str] = {}
        self.pack_nodes = self._load_custom_node(PACK_ROOT, ignore=builtin_nodes)
        self.test_nodes = self._load_custom_node(TEST_NODES_MODULE, ignore=builtin_nodes)
        self._server = _SilentServer()
        # the keys main.py passes; the executor reads "ram" and "ram_inactive" on every prompt
        self._executor = execution.PromptExecutor(self._server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def node_class(self, name: str) -> type:
        import nodes

        return nodes.NODE_CLASS_MAPPINGS[name]

    def run_prompt(self, prompt: dict) -> dict:
        """Validate and execute an API-format prompt; returns its history entry.

        The entry has "prompt_id", "outputs" (UI outputs by node id), "meta" and "status".
        Raises AssertionError with ComfyUI's own error text if validation or execution fails.
        """
        import execution

        prompt = json.loads(json.dumps(prompt))  # exactly what the server would receive over HTTP
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        if not valid:
            raise AssertionError("ComfyUI rejected the prompt: " + _validation_error_text(error, node_errors))
        self._executor.execute(prompt, prompt_id, extra_data={}, execute_outputs=outputs)
        status = _status_from_messages(self._executor.status_messages)
        if not status["completed"]:
            raise AssertionError(_execution_error_text(status["messages"]))
        return {"prompt_id": prompt_id, **self._executor.history_result, "status": status}

    def node_output(self, node_id: str, index: int = 0):
        """The value of output `index` of a node of the last prompt (e.g. the LATENT of a KSampler)."""
        # get() is a coroutine that may also ask external cache providers; get_local() reads this process's cache
        entry = self._executor.caches.outputs.get_local(str(node_id))
        if entry is None:
            raise KeyError(f"node {node_id} has no cached output")
        return entry.outputs[index][0]

    def clear_cache(self) -> None:
        """Forget cached node outputs, so the next prompt executes every node again."""
        self._executor.reset()

    def _point_folders_at_temp_dirs(self) -> None:
        import folder_paths

        for name in ("output", "input", "temp", "user"):
            (self.base_dir / name).mkdir(parents=True, exist_ok=True)
        folder_paths.set_output_directory(str(self.base_dir / "output"))
        folder_paths.set_input_directory(str(self.base_dir / "input"))
        folder_paths.set_temp_directory(str(self.base_dir / "temp"))
        folder_paths.set_user_directory(str(self.base_dir / "user"))
        # Replace rather than add, so models in the user's own ComfyUI tree can't leak into tests.
        for folder in tiny_models.MODEL_FOLDERS:
            _paths, extensions = folder_paths.folder_names_and_paths[folder]
            folder_paths.folder_names_and_paths[folder] = ([str(self.models_dir / folder)], extensions)
        folder_paths.filename_list_cache.clear()

    def _load_custom_node(self, module_path: Path, ignore: set[str]) -> list[str]:
        """Load one custom node module or package the way ComfyUI does; returns the new node names."""
        import nodes

        before = set(nodes.NODE_CLASS_MAPPINGS)
        collector = _LogCollector()
        logging.getLogger().addHandler(collector)
        try:
            loaded = asyncio.run(nodes.load_custom_node(str(module_path), ignore=ignore))
        finally:
            logging.getLogger().removeHandler(collector)
        if not loaded:
            self.import_errors[str(module_path)] = "\n".join(collector.lines) or "import failed"
        return sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)


def _status_from_messages(messages: list[tuple[str, dict]]) -> dict:
    succeeded = any(event == "execution_success" for event, _data in messages)
    return {"status_str": "success" if succeeded else "error", "completed": succeeded, "messages": messages}


def _validation_error_text(error: dict, node_errors: dict) -> str:
    lines = [f"{error.get('message')}: {error.get('details')}"]
    for node_id, info in node_errors.items():
        for reason in info.get("errors", []):
            lines.append(f"  node {node_id} ({info.get('class_type')}): {reason.get('message')}: {reason.get('details')}")
    return "\n".join(lines)


def _execution_error_text(messages: list) -> str:
    for event, data in messages:
        if event == "execution_error":
            traceback_text = "".join(data.get("traceback") or [])
            return (
                f"node {data.get('node_id')} ({data.get('node_type')}) raised {data.get('exception_type')}: {data.get('exception_message')}\n{traceback_text}"
            )
        if event == "execution_interrupted":
            return f"execution interrupted at node {data.get('node_id')} ({data.get('node_type')})"
    return f"prompt did not finish; messages: {[event for event, _data in messages]}"


# ---------------------------------------------------------------------------------------------
# ComfyUI as a server process
# ---------------------------------------------------------------------------------------------


class ComfyServer:
    """`python main.py` on 127.0.0.1 with a temp --base-directory; use as a context manager.

    The base directory gets the tiny models (symlinked from models_source, or built there),
    this pack symlinked as custom_nodes/ComfyUI-LongVideo and the test-only node module.
    """

    BOOT_TIMEOUT_S = 120.0
    STOP_GRACE_S = 10.0

    def __init__(self, comfy_dir: Path, models_source: Path | None = None, extra_args: tuple[str, ...] = ()):
        self.comfy_dir = Path(comfy_dir).resolve()
        self.models_source = Path(models_source) if models_source else None
        self.extra_args = tuple(extra_args)
        self.base_dir: Path | None = None
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._http: ComfyHttp | None = None

    def __enter__(self) -> "ComfyServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "comfyui.log"

    def start(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="comfy-host-"))
        self._lay_out_base_dir()
        self.port = _free_loopback_port()
        self._http = ComfyHttp(self.url)
        self._log_file = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            self._command(), cwd=self.comfy_dir, env=self._environment(), stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        self._wait_until_ready()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=self.STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log_file is not None:
            self._log_file.close()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        self._process = self._log_file = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def object_info(self) -> dict:
        return self._http.get_json("/object_info")

    def queue(self, prompt: dict, extra_data: dict | None = None) -> str:
        """POST /prompt; returns the prompt id. A prompt ComfyUI rejects raises AssertionError.

        extra_data is sent as the frontend sends it, e.g. {"extra_pnginfo": {"workflow": ...}}.
        """
        payload = {"prompt": prompt, "client_id": "host-tests"}
        if extra_data is not None:
            payload["extra_data"] = extra_data
        try:
            answer = self._http.post_json("/prompt", payload)
        except HttpError as error:
            if error.status == 400:
                raise AssertionError(_rejection_text(error.body)) from None
            raise
        return answer["prompt_id"]

    def running_prompt_ids(self) -> list[str]:
        """Ids of the prompts executing right now (GET /queue)."""
        running, _waiting = self._http.queue_ids()
        return running

    def pending_prompt_ids(self) -> list[str]:
        """Ids of the prompts waiting in the queue (GET /queue)."""
        _running, waiting = self._http.queue_ids()
        return waiting

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """Poll /history until the prompt is done; returns its history entry (with "status")."""
        entry = self._http.wait_for_finished_entry(prompt_id, time.monotonic() + timeout, between_polls=self._fail_if_exited)
        if entry is None:
            raise AssertionError(f"prompt {prompt_id} not done after {timeout} s\n{self._log_tail()}")
        return entry

    def run_prompt(self, prompt: dict, timeout: float = 300.0, extra_data: dict | None = None) -> dict:
        """queue + wait; raises AssertionError with ComfyUI's error text if the prompt fails."""
        entry = self.wait(self.queue(prompt, extra_data), timeout)
        if entry["status"]["status_str"] != "success":
            raise AssertionError(_execution_error_text(entry["status"].get("messages", [])))
        return entry

    def interrupt(self) -> None:
        self._http.interrupt()

    def settle(self, timeout: float = 60.0) -> None:
        """Drop waiting prompts and interrupt running ones until the server is idle.

        A test that failed or timed out can leave a long prompt behind; every later test on this
        server would queue behind it.
        """
        self._http.post_json("/queue", {"clear": True})
        deadline = time.monotonic() + timeout
        while self.running_prompt_ids():
            if time.monotonic() > deadline:
                raise RuntimeError(f"ComfyUI is still running a prompt {timeout} s after the interrupt\n{self._log_tail()}")
            self.interrupt()
            time.sleep(0.2)

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base_dir),
            "--disable-api-nodes",
            "--use-pytorch-cross-attention",
            # The default database lives inside the ComfyUI checkout; keep it in the temp dir.
            "--database-url",
            f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}",
            *self.extra_args,
        ]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        # A real install never has the pack root on the path, where its `nodes/` could shadow ComfyUI's.
        python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != PACK_ROOT]
        env["PYTHONPATH"] = os.pathsep.join(python_path)
        return env

    def _lay_out_base_dir(self) -> None:
        for name in ("custom_nodes", "output", "input", "temp", "user"):
            (self.base_dir / name).mkdir()
        models_dir = self.base_dir / "models"
        if self.models_source is None:
            build_tiny_models(models_dir, self.comfy_dir)
        else:
            _link_model_files(self.models_source, models_dir)
        custom_nodes = self.base_dir / "custom_nodes"
        (custom_nodes / PACK_DIR_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
        (custom_nodes / TEST_NODES_MODULE.name).symlink_to(TEST_NODES_MODULE)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            self._fail_if_exited()
            try:
                self._http.get_json("/object_info")
                return
            except (ServerUnreachable, HttpError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"ComfyUI did not answer /object_info within {self.BOOT_TIMEOUT_S} s\n{self._log_tail()}")

    def _fail_if_exited(self) -> None:
        if self._process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {self._process.returncode}\n{self._log_tail()}")

    def _log_tail(self, lines: int = 60) -> str:
        return "--- ComfyUI log tail ---\n" + "\n".join(self.log_text().splitlines()[-lines:])


def _rejection_text(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return f"ComfyUI rejected the prompt: {body.decode(errors='replace')}"
    return "ComfyUI rejected the prompt: " + _validation_error_text(answer.get("error", {}), answer.get("node_errors", {}))


def _link_model_files(source: Path, models_dir: Path) -> None:
    for folder in tiny_models.MODEL_FOLDERS:
        (models_dir / folder).mkdir(parents=True)
        # model configs kept next to the weights (*.json) travel with them
        for file in sorted([*(source / folder).glob("*.safetensors"), *(source / folder).glob("*.json")]):
            (models_dir / folder / file.name).symlink_to(file.resolve())


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
