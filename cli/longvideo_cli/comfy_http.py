"""ComfyUI's HTTP API as this pack uses it: JSON requests, the queue, interrupts and a prompt's
/history entry. cli/run_workflow.py and the host test harness (tests/host/comfy_host.py) both
talk to ComfyUI through this module.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_SERVER = "http://127.0.0.1:8188"
HTTP_TIMEOUT_S = 30.0
HISTORY_POLL_S = 0.2


class ServerUnreachable(Exception):
    """Nothing answers at the server's URL: refused, timed out, unknown host."""

    def __init__(self, url: str, reason):
        super().__init__(f"no ComfyUI answers at {url} ({reason})")


class NotComfyUI(Exception):
    """Something answers at the server's URL, but not ComfyUI's API."""


class HttpError(Exception):
    """ComfyUI answered with an HTTP error status; `body` is the answer's bytes."""

    def __init__(self, method: str, path: str, status: int, body: bytes):
        self.method, self.path, self.status, self.body = method, path, status, body
        super().__init__(f"HTTP {status} to {method} {path}: {self.answer()}")

    def answer(self):
        """The body as JSON where it is JSON (ComfyUI's error objects), else as text."""
        try:
            return json.loads(self.body)
        except ValueError:
            return self.body.decode("utf-8", errors="replace").strip()


def normalize_server_url(text: str) -> str:
    """http(s)://host[:port][/prefix] without a trailing slash; a bare host:port means http.

    ValueError, worded to follow the option's name, for anything else.
    """
    url = text if "://" in text else f"http://{text}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL such as {DEFAULT_SERVER}, got {text!r}.")
    try:
        _ = parts.port  # reading it checks it
    except ValueError:
        raise ValueError(f"has an invalid port: {text!r}.") from None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class ComfyHttp:
    """Requests to the ComfyUI at `url` (as normalize_server_url gives it); every request has a timeout."""

    def __init__(self, url: str, timeout_s: float = HTTP_TIMEOUT_S):
        self.url = url
        self.timeout_s = timeout_s

    def get_json(self, path: str):
        return json.loads(self.get_bytes(path) or b"null")

    def post_json(self, path: str, payload: dict):
        body = self._request("POST", path, json.dumps(payload).encode("utf-8"))
        return json.loads(body or b"null")

    def get_bytes(self, path: str) -> bytes:
        return self._request("GET", path)

    def queue_ids(self) -> tuple[list[str], list[str]]:
        """Ids of the prompts running now and of those waiting, from one look at GET /queue."""
        queue = self.get_json("/queue")
        return [item[1] for item in queue["queue_running"]], [item[1] for item in queue["queue_pending"]]

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt: only if it is `prompt_id` where given, whichever it is otherwise."""
        self.post_json("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def delete_from_queue(self, prompt_id: str) -> None:
        self.post_json("/queue", {"delete": [prompt_id]})

    def finished_entry(self, prompt_id: str) -> dict | None:
        """The prompt's /history entry once ComfyUI has finished with it (it then has a status)."""
        entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
        return entry if entry and entry.get("status") else None

    def wait_for_finished_entry(self, prompt_id: str, deadline: float | None, between_polls=None) -> dict | None:
        """Poll /history until the prompt is finished; None once time.monotonic() passes `deadline`.

        Without a deadline it waits as long as the prompt runs. `between_polls` is called after
        each poll that found nothing, e.g. to give up when the server process has exited.
        """
        while True:
            entry = self.finished_entry(prompt_id)
            if entry is not None:
                return entry
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if between_polls is not None:
                between_polls()
            time.sleep(HISTORY_POLL_S)

    def _request(self, method: str, path: str, data: bytes | None = None) -> bytes:
        """The answer's body; HttpError for an HTTP error status, ServerUnreachable without an answer."""
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return answer.read()
        except urllib.error.HTTPError as error:
            raise HttpError(method, path, error.code, error.read()) from None
        except (urllib.error.URLError, OSError) as error:
            raise ServerUnreachable(self.url, getattr(error, "reason", error)) from None
