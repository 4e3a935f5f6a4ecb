"""Queue an API-format workflow on a running ComfyUI, follow its progress and report its outputs.

    python cli/run_workflow.py workflows/api/fifo_ltxv.json --prompt "a paper boat" --frames 64 --seed 7

Overrides (--prompt, --negative, --frames, --seed, --model, --set) change the workflow before it
is queued; each change is printed. Progress comes from ComfyUI's websocket, the outputs from
/history. Python standard library only, so it runs with any Python 3.10+, inside or outside
ComfyUI's environment; ComfyUI never imports this folder.

Exit codes: 0 success, 1 the prompt was rejected, failed, was interrupted elsewhere or timed out,
2 usage or file errors or no ComfyUI at --server, 130 interrupted with Ctrl-C.
"""
from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

EXIT_SUCCESS = 0
EXIT_PROMPT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEFAULT_SERVER = "http://127.0.0.1:8188"
HTTP_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
# After Ctrl-C, how long to wait for ComfyUI to confirm that it stopped the prompt.
INTERRUPT_CONFIRM_S = 15.0
PACK_ROOT = Path(__file__).resolve().parents[1]

LONG_VIDEO_SAMPLERS_WITH_LENGTH = ("LongVideoDiagonalQueueSampler", "LongVideoProgressiveARSampler")
SEED_INPUTS = ("seed", "noise_seed")
MODEL_FILE_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")
FILE_OUTPUT_KEYS = ("images", "gifs", "videos", "audio")


class UsageError(Exception):
    """A problem with the command line or the workflow file: exit 2."""


class ServerUnreachable(Exception):
    """Nothing (or nothing like ComfyUI) answers at --server: exit 2."""


# ---------------------------------------------------------------------------------------------
# Loading a workflow
# ---------------------------------------------------------------------------------------------

def load_workflow(path: Path) -> dict:
    """The API-format workflow in `path`: {node id: {"class_type", "inputs", ...}}."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{path} is not JSON: {error}") from None
    if is_ui_workflow(data):
        raise UsageError(ui_workflow_message(Path(path)))
    check_api_workflow(data, path)
    return data


def is_ui_workflow(data) -> bool:
    return isinstance(data, dict) and "nodes" in data and "links" in data


def ui_workflow_message(path: Path) -> str:
    message = (f"{path} is an editor (UI-format) workflow, with \"nodes\" and \"links\"; this command needs the "
               "API format. Open it in ComfyUI and save it with Workflow > Export (API)")
    api_twin = PACK_ROOT / "workflows" / "api" / path.name
    if api_twin.is_file() and api_twin.resolve() != path.resolve():
        return f"{message}, or use its API twin {api_twin}."
    return f"{message}, or use one of the API workflows in {PACK_ROOT / 'workflows' / 'api'}."


def check_api_workflow(data, path) -> None:
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{path} is not an API-format workflow: expected an object of nodes by id.")
    for node_id, node in data.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs"), dict):
            raise UsageError(f"{path} is not an API-format workflow: node {node_id!r} has no class_type and inputs.")


def is_link(value) -> bool:
    """API format writes a connection as [source node id, output index]."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def node_label(workflow: dict, node_id: str) -> str:
    return f"node {node_id} ({workflow[node_id]['class_type']})"


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    node_id: str
    class_type: str
    input_name: str
    old: object
    new: object
    unit: str = ""

    def describe(self) -> str:
        old = "(not set)" if self.old is _UNSET else _short(self.old)
        unit = f" {self.unit}" if self.unit else ""
        return f"node {self.node_id} ({self.class_type}) {self.input_name}: {old} -> {_short(self.new)}{unit}"


_UNSET = object()


def _short(value, limit: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 4] + "...\""


def _change(workflow: dict, node_id: str, input_name: str, new, unit: str = "") -> Change:
    node = workflow[node_id]
    old = node["inputs"].get(input_name, _UNSET)
    node["inputs"][input_name] = new
    return Change(node_id, node["class_type"], input_name, old, new, unit)


@dataclass
class Overrides:
    prompt: str | None = None
    negative: str | None = None
    frames: int | None = None
    seed: int | None = None
    models: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()


def apply_overrides(workflow: dict, overrides: Overrides) -> tuple[dict, list[Change]]:
    """A changed copy of the workflow and the changes; --set comes last, so it wins."""
    workflow = copy.deepcopy(workflow)
    changes = []
    for spec in overrides.models:
        changes += replace_model_file(workflow, *parse_model_spec(spec))
    if overrides.seed is not None:
        changes += set_seed(workflow, overrides.seed)
    if overrides.frames is not None:
        changes += set_frames(workflow, overrides.frames)
    if overrides.prompt is not None:
        changes.append(set_prompt_text(workflow, "positive", overrides.prompt))
    if overrides.negative is not None:
        changes.append(set_prompt_text(workflow, "negative", overrides.negative))
    for spec in overrides.sets:
        changes.append(set_input(workflow, *parse_set_spec(spec)))
    return workflow, changes


def set_seed(workflow: dict, seed: int) -> list[Change]:
    changes = [_change(workflow, node_id, name, seed)
               for node_id, node in workflow.items()
               for name in SEED_INPUTS
               if name in node["inputs"] and not is_link(node["inputs"][name])]
    if not changes:
        raise UsageError("--seed: the workflow has no seed or noise_seed input.")
    return changes


def set_frames(workflow: dict, frames: int) -> list[Change]:
    if frames < 1:
        raise UsageError("--frames must be at least 1.")
    samplers = [node_id for node_id, node in workflow.items() if node["class_type"] in LONG_VIDEO_SAMPLERS_WITH_LENGTH]
    if samplers:
        return [_change(workflow, node_id, "length", frames, "latent frames") for node_id in samplers]
    noise_search = [node_id for node_id, node in workflow.items() if "chunks" in node["inputs"]]
    if noise_search:
        node_id = noise_search[0]
        raise UsageError(
            f"--frames: {node_label(workflow, node_id)} has no length; it makes `chunks` chunks of `chunk_length` "
            f"frames each. Set the number of chunks with --set {node_id}.chunks=N.")
    raise UsageError(
        "--frames sets the `length` of a Diagonal Queue or Progressive AR sampler, and this workflow has neither; "
        "use --set ID.INPUT=N for the node that sets its length.")


def parse_model_spec(spec: str) -> tuple[str, str]:
    old, separator, new = spec.partition("=")
    if not separator or not old or not new:
        raise UsageError(f"--model expects OLD=NEW (file names), got {spec!r}.")
    return old, new


def replace_model_file(workflow: dict, old: str, new: str) -> list[Change]:
    changes = [_change(workflow, node_id, name, new)
               for node_id, node in workflow.items()
               for name, value in list(node["inputs"].items())
               if value == old]
    if not changes:
        used = sorted(model_files(workflow))
        listed = ", ".join(used) if used else "none"
        raise UsageError(f"--model: no input of the workflow is {old!r}. Model files it uses: {listed}.")
    return changes


def model_files(workflow: dict) -> set[str]:
    return {value for node in workflow.values() for value in node["inputs"].values()
            if isinstance(value, str) and value.lower().endswith(MODEL_FILE_SUFFIXES)}


def parse_set_spec(spec: str) -> tuple[str, str, object]:
    """--set ID.INPUT=VALUE; VALUE is JSON when it parses (numbers, true, [\"5\", 0]), else a string."""
    target, separator, text = spec.partition("=")
    node_id, dot, input_name = target.partition(".")
    if not separator or not dot or not node_id or not input_name:
        raise UsageError(f"--set expects ID.INPUT=VALUE (e.g. 11.length=64), got {spec!r}.")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return node_id, input_name, value


def set_input(workflow: dict, node_id: str, input_name: str, value) -> Change:
    if node_id not in workflow:
        ids = ", ".join(f"{key} ({node['class_type']})" for key, node in workflow.items())
        raise UsageError(f"--set: the workflow has no node {node_id!r}. Its nodes: {ids}.")
    return _change(workflow, node_id, input_name, value)


# --- following conditioning back to the text encoders ------------------------------------------

def set_prompt_text(workflow: dict, side: str, text: str) -> Change:
    """Set `text` on the one text encoder behind the samplers' `side` (positive or negative) input."""
    option = "--prompt" if side == "positive" else "--negative"
    encoders = text_encoders_on(workflow, side)
    other_side = text_encoders_on(workflow, "negative" if side == "positive" else "positive")
    if not encoders:
        raise UsageError(f"{option}: no text encoder found behind a sampler's {side} input; "
                         "set the text with --set ID.text=\"...\".")
    if len(encoders) > 1:
        listed = ", ".join(node_label(workflow, node_id) for node_id in sorted(encoders, key=_id_order))
        raise UsageError(
            f"{option}: the {side} conditioning comes from {len(encoders)} text encoders ({listed}), e.g. a prompt "
            "schedule; set each text with --set ID.text=\"...\".")
    [encoder] = encoders
    if encoder in other_side:
        raise UsageError(f"{option}: {node_label(workflow, encoder)} feeds both the positive and the negative input; "
                         "set its text with --set ID.text=\"...\" if that is what you mean.")
    inputs = workflow[encoder]["inputs"]
    if "text" not in inputs:
        raise UsageError(f"{option}: {node_label(workflow, encoder)} has no `text` input; "
                         f"set its prompt inputs with --set {encoder}.INPUT=\"...\".")
    if is_link(inputs["text"]):
        source = inputs["text"][0]
        raise UsageError(f"{option}: the text of {node_label(workflow, encoder)} comes from "
                         f"{node_label(workflow, source)}; set it there with --set {source}.INPUT=\"...\".")
    return _change(workflow, encoder, "text", text)


def _id_order(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def conditioning_consumers(workflow: dict) -> list[str]:
    """Nodes that take a `positive` link and whose outputs feed no other node's conditioning.

    That is the sampler (or guider) end of the conditioning chain: LTXVConditioning and its kind
    also take `positive`, but pass it on to the sampler.
    """
    fed_as_conditioning = {value[0] for node in workflow.values()
                           for name, value in node["inputs"].items()
                           if _is_conditioning_input(name) and is_link(value)}
    return [node_id for node_id, node in workflow.items()
            if is_link(node["inputs"].get("positive")) and node_id not in fed_as_conditioning]


def text_encoders_on(workflow: dict, side: str) -> set[str]:
    encoders: set[str] = set()
    for node_id in conditioning_consumers(workflow):
        link = workflow[node_id]["inputs"].get(side)
        if is_link(link):
            encoders |= _encoders_behind(workflow, link, set())
    return encoders


def _encoders_behind(workflow: dict, link: list, visited: set) -> set[str]:
    node_id, output_index = link
    if node_id not in workflow or (node_id, output_index) in visited:
        return set()
    visited.add((node_id, output_index))
    inputs = workflow[node_id]["inputs"]
    if "text" in inputs or is_link(inputs.get("clip")):
        return {node_id}
    if is_link(inputs.get("positive")) and is_link(inputs.get("negative")):
        # ComfyUI's convention for nodes that condition both prompts (LTXVConditioning,
        # WanImageToVideo, ControlNet apply, ...): outputs 0 and 1 are positive and negative.
        followed = {0: [inputs["positive"]], 1: [inputs["negative"]]}.get(output_index, [])
    else:
        followed = [value for name, value in inputs.items() if _is_conditioning_input(name) and is_link(value)]
    found: set[str] = set()
    for upstream in followed:
        found |= _encoders_behind(workflow, upstream, visited)
    return found


def _is_conditioning_input(name: str) -> bool:
    return name in ("positive", "negative") or name.startswith("conditioning")


# ---------------------------------------------------------------------------------------------
# Explaining ComfyUI's answers
# ---------------------------------------------------------------------------------------------

def missing_node_types(workflow: dict, known_types) -> dict[str, list[str]]:
    """{class_type: [node ids]} for the node types this ComfyUI does not have."""
    missing: dict[str, list[str]] = {}
    for node_id, node in workflow.items():
        if node["class_type"] not in known_types:
            missing.setdefault(node["class_type"], []).append(node_id)
    return missing


def explain_rejection(answer, workflow: dict, known_types=None) -> str:
    """Text for a prompt that POST /prompt refused (HTTP 400).

    ComfyUI stops at the first unknown node type; with `known_types` (the keys of /object_info)
    every missing one is named.
    """
    if not isinstance(answer, dict):
        return f"ComfyUI rejected the prompt: {answer}"
    error = answer.get("error") if isinstance(answer.get("error"), dict) else {"message": str(answer.get("error"))}
    missing = missing_node_types(workflow, known_types) if known_types is not None else {}
    if missing:
        listed = "\n".join(f"  {class_type} (node {', '.join(ids)})" for class_type, ids in missing.items())
        return ("ComfyUI does not know these node types:\n" + listed +
                "\nInstall the node packs that provide them (for example with ComfyUI-Manager) and restart ComfyUI.")
    lines = [f"ComfyUI rejected the prompt: {error.get('message', 'no reason given')}"]
    node_errors = answer.get("node_errors") or {}
    lines += node_error_lines(node_errors)
    if not node_errors and error.get("details"):
        lines.append(f"  {error['details']}")
    return "\n".join(lines)


def node_error_lines(node_errors: dict) -> list[str]:
    """One line per invalid input: node, class, input and ComfyUI's reason."""
    lines = []
    for node_id, info in node_errors.items():
        for reason in info.get("errors", []):
            input_name = (reason.get("extra_info") or {}).get("input_name")
            where = f"node {node_id} ({info.get('class_type')})" + (f" input {input_name}" if input_name else "")
            details = reason.get("details")
            suffix = f" ({details})" if details and details != input_name else ""
            lines.append(f"  {where}: {reason.get('message')}{suffix}")
    return lines


def explain_execution_error(data: dict) -> str:
    """Text for an `execution_error` message (or history status message)."""
    message = str(data.get("exception_message", "")).strip()
    return (f"{node_label_from_event(data)} failed: {data.get('exception_type', 'error')}: {message}\n"
            "The ComfyUI console shows the traceback.")


def node_label_from_event(data: dict) -> str:
    return f"node {data.get('node_id')} ({data.get('node_type')})"


@dataclass(frozen=True)
class OutputFile:
    node_id: str
    filename: str
    subfolder: str
    folder_type: str

    @property
    def relative_path(self) -> str:
        """Where ComfyUI wrote it: output/..., temp/... or input/..., below ComfyUI's base folder."""
        return "/".join(part for part in (self.folder_type, self.subfolder, self.filename) if part)

    def view_url(self, server: str) -> str:
        query = urllib.parse.urlencode({"filename": self.filename, "subfolder": self.subfolder, "type": self.folder_type})
        return f"{server.rstrip('/')}/api/view?{query}"


def output_files(outputs: dict) -> list[OutputFile]:
    """The files of a history entry's outputs ({node id: {"images": [...], ...}})."""
    files = []
    for node_id, ui in outputs.items():
        for key in FILE_OUTPUT_KEYS:
            for item in ui.get(key) or []:
                if isinstance(item, dict) and "filename" in item:
                    files.append(OutputFile(node_id, item["filename"], item.get("subfolder", ""), item.get("type", "output")))
    return files


def output_texts(outputs: dict) -> list[tuple[str, str]]:
    """(node id, text) for text outputs such as Preview Any or the k-Step Noise Search report."""
    return [(node_id, str(text)) for node_id, ui in outputs.items() for text in ui.get("text") or []]


def report_outputs(outputs: dict, workflow: dict, server: str) -> list[str]:
    lines = []
    for node_id, text in output_texts(outputs):
        lines.append(f"{_label_if_known(workflow, node_id)} text:")
        lines += [f"  {line}" for line in text.splitlines()]
    files = output_files(outputs)
    if files:
        lines.append("files (below ComfyUI's base folder, and their URLs):")
    for file in files:
        note = "  (temporary: ComfyUI deletes it on restart)" if file.folder_type == "temp" else ""
        lines.append(f"  {file.relative_path}  from {_label_if_known(workflow, file.node_id)}{note}")
        lines.append(f"    {file.view_url(server)}")
    if not lines:
        lines.append("the prompt produced no files or text")
    return lines


def _label_if_known(workflow: dict, node_id: str) -> str:
    return node_label(workflow, node_id) if node_id in workflow else f"node {node_id}"


def download_path(directory: Path, file: OutputFile) -> Path:
    target = (directory / file.subfolder / file.filename).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise ValueError(f"{file.relative_path} would be written outside {directory}")
    return target


# ---------------------------------------------------------------------------------------------
# WebSocket client (RFC 6455), just what ComfyUI's /ws needs
# ---------------------------------------------------------------------------------------------

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KNOWN_OPCODES = {OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG}
CLOSE_NORMAL = 1000
MAX_HANDSHAKE_BYTES = 65536


class WebSocketError(Exception):
    pass


class WebSocketClosed(WebSocketError):
    pass


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes


@dataclass(frozen=True)
class Message:
    opcode: int
    payload: bytes

    @property
    def text(self) -> str:
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise WebSocketError("text message is not UTF-8") from None


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to Sec-WebSocket-Key `key`."""
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()).decode("ascii")


def apply_mask(payload: bytes, mask_key: bytes) -> bytes:
    """XOR with the 4-byte key repeated; masking and unmasking are the same operation."""
    if not payload:
        return b""
    repeated = (mask_key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def encode_frame(opcode: int, payload: bytes, mask_key: bytes | None = None, fin: bool = True) -> bytes:
    """One frame; a client must send every frame masked (`mask_key`, 4 random bytes)."""
    first_byte = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask_key else 0
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first_byte, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first_byte, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first_byte, mask_bit | 127, length)
    if mask_key:
        return header + mask_key + apply_mask(payload, mask_key)
    return header + payload


def decode_frame(buffer) -> tuple[Frame, int] | None:
    """The first frame in `buffer` and the bytes it took, or None while it is incomplete."""
    if len(buffer) < 2:
        return None
    first_byte, second_byte = buffer[0], buffer[1]
    if first_byte & 0x70:
        raise WebSocketError("frame uses reserved bits, but no extension was negotiated")
    fin, opcode = bool(first_byte & 0x80), first_byte & 0x0F
    if opcode not in KNOWN_OPCODES:
        raise WebSocketError(f"unknown opcode {opcode:#x}")
    masked, length, position = bool(second_byte & 0x80), second_byte & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack_from("!H", buffer, 2)
        position = 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,) = struct.unpack_from("!Q", buffer, 2)
        if length >> 63:
            raise WebSocketError("64-bit frame length has its top bit set")
        position = 10
    if opcode >= OP_CLOSE and (not fin or length > 125):
        raise WebSocketError("control frame is fragmented or longer than 125 bytes")
    mask_key = b""
    if masked:
        if len(buffer) < position + 4:
            return None
        mask_key = bytes(buffer[position:position + 4])
        position += 4
    if len(buffer) < position + length:
        return None
    payload = bytes(buffer[position:position + length])
    return Frame(fin, opcode, apply_mask(payload, mask_key) if masked else payload), position + length


class MessageAssembler:
    """Joins a fragmented message's frames; control frames may come between fragments and pass straight through."""

    def __init__(self):
        self._opcode: int | None = None
        self._parts: list[bytes] = []

    def add(self, frame: Frame) -> Message | None:
        if frame.opcode >= OP_CLOSE:
            return Message(frame.opcode, frame.payload)
        if frame.opcode == OP_CONTINUATION:
            if self._opcode is None:
                raise WebSocketError("continuation frame without a message to continue")
        elif self._opcode is not None:
            raise WebSocketError("new message started before the fragmented one ended")
        else:
            self._opcode = frame.opcode
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        message = Message(self._opcode, b"".join(self._parts))
        self._opcode, self._parts = None, []
        return message


def handshake_request(host_header: str, resource: str, key: str) -> bytes:
    return (f"GET {resource} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode("ascii")


def check_handshake_response(head: bytes, key: str) -> None:
    """Raise WebSocketError unless `head` (status line and headers) accepts the upgrade for `key`."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        raise WebSocketError(f"the server answered {status_line.strip()!r} instead of switching to a websocket")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in headers.get("connection", "").lower():
        raise WebSocketError("the server's answer lacks Upgrade: websocket / Connection: Upgrade")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketError("the server's Sec-WebSocket-Accept does not match the key sent")


class WebSocketClient:
    def __init__(self, connection: socket.socket, received: bytes = b""):
        self._socket = connection
        self._buffer = bytearray(received)
        self._assembler = MessageAssembler()

    @classmethod
    def connect(cls, url: str, timeout: float) -> "WebSocketClient":
        """Open ws:// or wss:// `url`. OSError when nothing answers, WebSocketError for a refused upgrade."""
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        connection = socket.create_connection((parts.hostname, port), timeout=timeout)
        try:
            if secure:
                connection = ssl.create_default_context().wrap_socket(connection, server_hostname=parts.hostname)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.sendall(handshake_request(parts.netloc, resource, key))
            head, received = cls._read_handshake(connection)
            check_handshake_response(head, key)
        except BaseException:
            connection.close()
            raise
        return cls(connection, received)

    @staticmethod
    def _read_handshake(connection: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                raise WebSocketError("the server closed the connection during the websocket handshake")
            data += chunk
            if len(data) > MAX_HANDSHAKE_BYTES:
                raise WebSocketError("the websocket handshake answer is too long")
        head, _, received = data.partition(b"\r\n\r\n")
        return head, received

    def receive(self, timeout: float) -> Message | None:
        """The next text or binary message, or None after `timeout` s. Answers pings; WebSocketClosed on close."""
        deadline = time.monotonic() + timeout
        while True:
            decoded = decode_frame(self._buffer)
            if decoded is not None:
                frame, used = decoded
                del self._buffer[:used]
                message = self._assembler.add(frame)
                if message is None or message.opcode == OP_PONG:
                    continue
                if message.opcode == OP_PING:
                    self.send(OP_PONG, message.payload)
                    continue
                if message.opcode == OP_CLOSE:
                    self._answer_close(message.payload)
                    raise WebSocketClosed("ComfyUI closed the websocket")
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._socket.settimeout(remaining)
            try:
                chunk = self._socket.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            if not chunk:
                raise WebSocketClosed("the connection to ComfyUI was closed")
            self._buffer += chunk

    def send(self, opcode: int, payload: bytes) -> None:
        self._socket.sendall(encode_frame(opcode, payload, os.urandom(4)))

    def _answer_close(self, payload: bytes) -> None:
        try:
            self.send(OP_CLOSE, payload[:2])
        except OSError:
            pass
        self._socket.close()

    def close(self) -> None:
        try:
            self.send(OP_CLOSE, struct.pack("!H", CLOSE_NORMAL))
        except OSError:
            pass
        self._socket.close()


# ---------------------------------------------------------------------------------------------
# Talking to ComfyUI
# ---------------------------------------------------------------------------------------------

def normalize_server_url(text: str) -> str:
    """http(s)://host[:port][/prefix] without a trailing slash; a bare host:port means http."""
    url = text if "://" in text else f"http://{text}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--server must be an http:// or https:// URL such as {DEFAULT_SERVER}, got {text!r}.")
    try:
        parts.port
    except ValueError:
        raise UsageError(f"--server has an invalid port: {text!r}.") from None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def unreachable_message(url: str, reason) -> str:
    return (f"no ComfyUI answers at {url} ({reason}). Start it with `python main.py` in the ComfyUI folder, "
            "or pass --server URL for one that runs elsewhere.")


class ComfyClient:
    def __init__(self, server: str):
        self.url = normalize_server_url(server)

    def websocket_url(self, client_id: str) -> str:
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws", f"clientId={client_id}", ""))

    def get_json(self, path: str):
        return json.loads(self._request(urllib.request.Request(self.url + path)) or b"null")

    def post_json(self, path: str, payload: dict):
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode("utf-8"), method="POST",
                                         headers={"Content-Type": "application/json"})
        return json.loads(self._request(request) or b"null")

    def download(self, file: OutputFile, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self._request(urllib.request.Request(file.view_url(self.url))))

    def _request(self, request: urllib.request.Request) -> bytes:
        """The answer's body; urllib.error.HTTPError for an HTTP error status, ServerUnreachable without an answer."""
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
                return answer.read()
        except urllib.error.HTTPError:
            raise  # a URLError too, but one that ComfyUI answered
        except (urllib.error.URLError, OSError) as error:
            raise ServerUnreachable(unreachable_message(self.url, getattr(error, "reason", error))) from None


def read_error_body(error: urllib.error.HTTPError):
    body = error.read()
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace").strip()


# ---------------------------------------------------------------------------------------------
# Following a run
# ---------------------------------------------------------------------------------------------

class Display:
    """Progress on one updating line when stdout is a terminal, plain lines otherwise (logs, pipes)."""

    def __init__(self, stream=None, error_stream=None):
        self.stream = stream or sys.stdout
        self.error_stream = error_stream or sys.stderr
        self.live = self.stream.isatty()
        self._line_open = False

    def line(self, text: str) -> None:
        self._end_progress_line()
        print(text, file=self.stream, flush=True)

    def error(self, text: str) -> None:
        self._end_progress_line()
        self.stream.flush()
        print(f"error: {text}", file=self.error_stream, flush=True)

    def progress(self, text: str) -> None:
        if not self.live:
            self.line(text)
            return
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._line_open = True

    def _end_progress_line(self) -> None:
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False


def describe_event(event: str, data: dict, workflow: dict) -> str | None:
    """The line to show for a websocket message about our prompt; None for those not worth a line."""
    if event == "execution_start":
        return "started"
    if event == "execution_cached" and data.get("nodes"):
        return f"cached from an earlier run, not run again: {len(data['nodes'])} nodes"
    if event == "executing" and data.get("node") is not None:
        return f"running {_label_if_known(workflow, str(data['node']))}"
    if event == "progress":
        value, maximum = data.get("value", 0), data.get("max", 0)
        percent = f" ({100 * value // maximum}%)" if maximum else ""
        return f"{_label_if_known(workflow, str(data.get('node')))}: step {value}/{maximum}{percent}"
    if event == "executed" and data.get("output"):
        return f"output from {_label_if_known(workflow, str(data.get('node')))}"
    return None


TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


class PromptRun:
    def __init__(self, client: ComfyClient, workflow: dict, display: Display, timeout: float | None, download_dir: Path | None):
        self.client, self.workflow, self.display = client, workflow, display
        self.timeout, self.download_dir = timeout, download_dir
        self.prompt_id = str(uuid.uuid4())

    def execute(self) -> int:
        client_id = uuid.uuid4().hex
        websocket = self._connect(client_id)
        started = time.monotonic()
        try:
            rejection = self._queue(client_id)
            if rejection:
                self.display.error(rejection)
                return EXIT_PROMPT_FAILED
            deadline = started + self.timeout if self.timeout else None
            if not self._follow(websocket, deadline):
                self.display.error(f"the prompt did not finish within {self.timeout:g} s; it keeps running on "
                                   f"ComfyUI (prompt id {self.prompt_id}).")
                return EXIT_PROMPT_FAILED
            entry = self._history_entry(deadline)
        except KeyboardInterrupt:
            self._cancel()
            return EXIT_INTERRUPTED
        finally:
            websocket.close()
        if entry is None:
            self.display.error(f"ComfyUI has no result for prompt {self.prompt_id} within {self.timeout:g} s.")
            return EXIT_PROMPT_FAILED
        return self._report(entry, time.monotonic() - started)

    def _connect(self, client_id: str) -> WebSocketClient:
        url = self.client.websocket_url(client_id)
        try:
            return WebSocketClient.connect(url, CONNECT_TIMEOUT_S)
        except WebSocketError as error:
            raise ServerUnreachable(f"{self.client.url} answers, but not like ComfyUI: {error}") from None
        except OSError as error:
            raise ServerUnreachable(unreachable_message(self.client.url, error.strerror or error)) from None

    def _queue(self, client_id: str) -> str | None:
        """POST /prompt; the reason when ComfyUI refuses it."""
        payload = {"prompt": self.workflow, "client_id": client_id, "prompt_id": self.prompt_id}
        try:
            answer = self.client.post_json("/prompt", payload)
        except urllib.error.HTTPError as error:
            body = read_error_body(error)
            if error.code != 400:
                return f"ComfyUI answered HTTP {error.code} to POST /prompt: {body}"
            return explain_rejection(body, self.workflow, self._known_node_types(body))
        self.prompt_id = answer.get("prompt_id", self.prompt_id)
        self.display.line(f"queued prompt {self.prompt_id} on {self.client.url}")
        skipped = node_error_lines(answer.get("node_errors") or {})
        if skipped:
            self.display.line("some outputs are invalid and will not run:\n" + "\n".join(skipped))
        return None

    def _known_node_types(self, rejection) -> set | None:
        """Node types ComfyUI has, asked only for the rejection that names an unknown one."""
        error = rejection.get("error") if isinstance(rejection, dict) else None
        if not isinstance(error, dict) or error.get("type") != "invalid_prompt":
            return None
        try:
            return set(self.client.get_json("/object_info"))
        except (urllib.error.HTTPError, ServerUnreachable, ValueError):
            return None

    def _follow(self, websocket: WebSocketClient, deadline: float | None) -> bool:
        """Show our prompt's progress until it ends; False when the deadline passes first."""
        while True:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                return False
            try:
                message = websocket.receive(wait)
            except (WebSocketError, OSError) as error:
                self.display.line(f"lost the websocket ({error}); waiting for the result through /history")
                return True
            if message is None or message.opcode != OP_TEXT:
                continue  # binary messages are preview images
            try:
                event = json.loads(message.text)
                kind, data = event["type"], event.get("data") or {}
            except (ValueError, TypeError, KeyError):
                continue  # not a ComfyUI event; nothing to show
            if data.get("prompt_id", self.prompt_id) != self.prompt_id:
                continue
            if kind in TERMINAL_EVENTS or (kind == "executing" and data.get("node") is None and "prompt_id" in data):
                return True
            text = describe_event(kind, data, self.workflow)
            if text is not None:
                (self.display.progress if kind == "progress" else self.display.line)(text)

    def _history_entry(self, deadline: float | None) -> dict | None:
        """The prompt's /history entry once it has a status; None if the deadline passes first."""
        while True:
            entry = self.client.get_json(f"/history/{self.prompt_id}").get(self.prompt_id)
            if entry and entry.get("status"):
                return entry
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.2)

    def _cancel(self) -> None:
        """After Ctrl-C: stop our prompt if it runs, drop it if it waits; leave other prompts alone."""
        self.display.line("Ctrl-C: stopping the prompt")
        try:
            queue = self.client.get_json("/queue")
            if any(item[1] == self.prompt_id for item in queue.get("queue_running", [])):
                self.client.post_json("/interrupt", {"prompt_id": self.prompt_id})
                entry = self._history_entry(time.monotonic() + INTERRUPT_CONFIRM_S)
                interrupted = status_message(entry, "execution_interrupted") if entry else None
                self.display.line(f"ComfyUI interrupted it at {node_label_from_event(interrupted)}" if interrupted
                                  else "asked ComfyUI to interrupt it")
            elif any(item[1] == self.prompt_id for item in queue.get("queue_pending", [])):
                self.client.post_json("/queue", {"delete": [self.prompt_id]})
                self.display.line("removed it from ComfyUI's queue")
        except (ServerUnreachable, urllib.error.HTTPError, ValueError) as error:
            self.display.error(f"could not stop the prompt on ComfyUI: {error}")

    def _report(self, entry: dict, seconds: float) -> int:
        outputs = entry.get("outputs") or {}
        status = entry["status"]
        succeeded = status.get("status_str") == "success"
        if succeeded:
            self.display.line(f"finished in {seconds:.1f} s")
        if succeeded or outputs:
            for line in report_outputs(outputs, self.workflow, self.client.url):
                self.display.line(line)
        if not succeeded:
            self.display.error(failure_text(status))
            return EXIT_PROMPT_FAILED
        return self._download(outputs)

    def _download(self, outputs: dict) -> int:
        if self.download_dir is None:
            return EXIT_SUCCESS
        for file in output_files(outputs):
            try:
                target = download_path(self.download_dir, file)
                self.client.download(file, target)
            except (ValueError, OSError, urllib.error.HTTPError) as error:
                self.display.error(f"could not download {file.relative_path}: {error}")
                return EXIT_PROMPT_FAILED
            self.display.line(f"downloaded {target}")
        return EXIT_SUCCESS


def status_message(entry: dict, event: str) -> dict | None:
    """The data of `event` among a history entry's status messages ([event, data] pairs)."""
    for name, data in entry["status"].get("messages") or []:
        if name == event:
            return data
    return None


def failure_text(status: dict) -> str:
    entry = {"status": status}
    error = status_message(entry, "execution_error")
    if error:
        return explain_execution_error(error)
    interrupted = status_message(entry, "execution_interrupted")
    if interrupted:
        return f"the prompt was interrupted at {node_label_from_event(interrupted)}, not by this command."
    return f"the prompt ended with status {status.get('status_str')!r}."


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

EPILOG = """\
examples:
  python cli/run_workflow.py workflows/api/fifo_ltxv.json --prompt "a paper boat on a rainy street" --frames 64 --seed 7
  python cli/run_workflow.py workflows/api/pavdm_ltxv.json --model ltx-video-2b-v0.9.5.safetensors=my_ltxv.safetensors
  python cli/run_workflow.py workflows/api/kstep_ltxv.json --set 11.chunks=3 --download ./videos

exit codes: 0 success; 1 ComfyUI rejected the prompt, it failed, it was interrupted from elsewhere
or --timeout passed; 2 usage or file errors, or no ComfyUI at --server; 130 Ctrl-C (the prompt is
interrupted on ComfyUI, or removed from its queue).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_workflow.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Queue an API-format workflow on a running ComfyUI, show its progress and where its outputs are.")
    parser.add_argument("workflow", type=Path, help="API-format workflow JSON (editor: Workflow > Export (API)), e.g. workflows/api/fifo_ltxv.json")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"ComfyUI's URL (default {DEFAULT_SERVER})")
    parser.add_argument("--prompt", metavar="TEXT", help="text of the text encoder behind the sampler's positive input")
    parser.add_argument("--negative", metavar="TEXT", help="text of the text encoder behind the sampler's negative input")
    parser.add_argument("--frames", type=int, metavar="N",
                        help="`length` of the Diagonal Queue / Progressive AR sampler, in LATENT frames "
                             "(decoded: Wan 4 x (N - 1) + 1 frames, LTX-Video 8 x (N - 1) + 1)")
    parser.add_argument("--seed", type=int, metavar="N", help="value for every seed and noise_seed input")
    parser.add_argument("--model", action="append", default=[], metavar="OLD=NEW",
                        help="use model file NEW wherever the workflow names OLD (repeatable)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="ID.INPUT=VALUE",
                        help="set input INPUT of node ID; VALUE is read as JSON (64, 2.5, true, [\"5\", 0]) or else "
                             "as text (repeatable, applied after the other options)")
    parser.add_argument("--download", type=Path, metavar="DIR", help="also fetch the output files into DIR")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after SECONDS (default: wait)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    display = Display()
    try:
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds.")
        client = ComfyClient(args.server)
        workflow = load_workflow(args.workflow)
        overrides = Overrides(args.prompt, args.negative, args.frames, args.seed, tuple(args.model), tuple(args.sets))
        workflow, changes = apply_overrides(workflow, overrides)
        if changes:
            display.line("changes:\n" + "\n".join(f"  {change.describe()}" for change in changes))
        return PromptRun(client, workflow, display, args.timeout, args.download).execute()
    except (UsageError, ServerUnreachable) as error:
        display.error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        display.line("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
