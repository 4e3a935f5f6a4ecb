"""A stand-in for ComfyUI's HTTP API and /ws websocket, for testing the command without ComfyUI.

It answers POST /prompt, GET /history/{id}, GET /queue, POST /interrupt, POST /queue (delete),
GET /object_info and GET /api/view in the shapes of ComfyUI 0.33's server.py, and sends a
scripted list of websocket events once the prompt is queued. Server-side websocket frames come
from websocket-client's own frame class; only the handshake answer is written here.
"""

from __future__ import annotations

import _thread
import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import websocket

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Every wait in here is bounded, so a command that misbehaves fails its test instead of hanging it.
WAIT_S = 10.0


class FakeComfy:
    """Set the fields before running the command; read `requests` afterwards.

    events(prompt_id) -> the websocket messages to send once the prompt is queued: (type, data)
    pairs for ComfyUI's events, str for other text, bytes for a binary (preview) message.
    """

    def __init__(self):
        self.events = lambda prompt_id: []
        self.close_websocket_after_events = False
        self.websocket_status = 101
        self.prompt_status = 200
        self.rejection: dict | None = None
        self.object_info: dict = {}
        self.polls_until_finished: int | None = 0
        self.outputs: dict = {}
        self.execution_messages: list = []
        self.waiting_in_queue = False
        self.ctrl_c = False
        self.requests: list[tuple[str, str, object]] = []
        self.websocket_paths: list[str] = []
        self.prompt_id: str | None = None
        self.interrupted = False
        self._history_polls = 0
        self._answered_prompt = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeComfy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(WAIT_S)

    def posted(self, path: str) -> list:
        return [body for method, request_path, body in self.requests if method == "POST" and request_path == path]

    def press_ctrl_c(self) -> None:
        """Raise KeyboardInterrupt in the command's (main) thread, once."""
        if self.ctrl_c:
            self.ctrl_c = False
            _thread.interrupt_main()

    def history(self, prompt_id: str) -> dict:
        if prompt_id != self.prompt_id:
            return {}
        self._history_polls += 1
        self.press_ctrl_c()
        if self.interrupted:
            messages = [
                ["execution_start", {"prompt_id": prompt_id}],
                ["execution_interrupted", {"prompt_id": prompt_id, "node_id": "11", "node_type": "LongVideoDiagonalQueueSampler", "executed": []}],
            ]
            return {prompt_id: self._entry("error", messages)}
        if self.polls_until_finished is None or self._history_polls <= self.polls_until_finished:
            return {}
        status = "error" if any(event == "execution_error" for event, _ in self.execution_messages) else "success"
        return {prompt_id: self._entry(status, self.execution_messages)}

    def queue(self) -> dict:
        finished = self.interrupted or (self.polls_until_finished is not None and self._history_polls > self.polls_until_finished)
        item = [[0, self.prompt_id, {}, {}, []]] if self.prompt_id and not finished else []
        if self.waiting_in_queue:
            return {"queue_running": [], "queue_pending": item}
        return {"queue_running": item, "queue_pending": []}

    def _entry(self, status_str: str, messages: list) -> dict:
        return {
            "prompt": [0, self.prompt_id, {}, {}, []],
            "outputs": self.outputs,
            "status": {"status_str": status_str, "completed": status_str == "success", "messages": messages},
            "meta": {},
        }


def _handler_for(fake: FakeComfy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urlsplit(self.path)
            fake.requests.append(("GET", self.path, None))
            if path.path == "/ws":
                self._websocket(path)
            elif path.path.startswith("/history/"):
                self._json(fake.history(path.path.removeprefix("/history/")))
            elif path.path == "/queue":
                self._json(fake.queue())
            elif path.path == "/object_info":
                self._json(fake.object_info)
            elif path.path == "/api/view":
                self._answer(200, f"file {parse_qs(path.query)['filename'][0]}".encode())
            else:
                self._answer(404, b"404: Not Found")

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.requests.append(("POST", self.path, body))
            if self.path == "/prompt":
                self._queue_prompt(body)
            elif self.path == "/interrupt":
                fake.interrupted = body.get("prompt_id") == fake.prompt_id
                self._answer(200, b"")
            elif self.path == "/queue":
                fake.waiting_in_queue = False
                fake.prompt_id = None
                self._answer(200, b"")
            else:
                self._answer(404, b"404: Not Found")

        def _queue_prompt(self, body):
            if fake.prompt_status != 200:
                self._answer(fake.prompt_status, b"404: Not Found")
            elif fake.rejection is not None:
                self._json(fake.rejection, 400)
            else:
                fake.prompt_id = body["prompt_id"]
                self._json({"prompt_id": fake.prompt_id, "number": 0, "node_errors": {}})
            fake._answered_prompt.set()

        def _json(self, value, status=200):
            self._answer(status, json.dumps(value).encode(), "application/json")

        def _answer(self, status, body, content_type="text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _websocket(self, path):
            fake.websocket_paths.append(self.path)
            if fake.websocket_status != 101:
                self._answer(fake.websocket_status, b"404: Not Found")
                return
            key = self.headers["Sec-WebSocket-Key"]
            accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            client_id = parse_qs(path.query)["clientId"][0]
            self._send(websocket.ABNF.OPCODE_TEXT, json.dumps({"type": "status", "data": {"sid": client_id}}))
            fake._answered_prompt.wait(WAIT_S)
            for event in fake.events(fake.prompt_id) if fake.prompt_id else []:
                if isinstance(event, bytes):
                    self._send(websocket.ABNF.OPCODE_BINARY, event)
                elif isinstance(event, str):
                    self._send(websocket.ABNF.OPCODE_TEXT, event)
                else:
                    self._send(websocket.ABNF.OPCODE_TEXT, json.dumps({"type": event[0], "data": event[1]}))
            if fake.close_websocket_after_events:
                self._send(websocket.ABNF.OPCODE_CLOSE, b"\x03\xe8")
                return
            fake.press_ctrl_c()
            self.connection.settimeout(WAIT_S)
            try:
                if self.rfile.read(1):  # the client sends nothing but its close frame: answer it
                    self._send(websocket.ABNF.OPCODE_CLOSE, b"\x03\xe8")
            except OSError:
                pass
            self.close_connection = True

        def _send(self, opcode, payload):
            payload = payload.encode() if isinstance(payload, str) else payload
            self.wfile.write(websocket.ABNF(1, 0, 0, 0, opcode, 0, payload).format())
            self.wfile.flush()

    return Handler
