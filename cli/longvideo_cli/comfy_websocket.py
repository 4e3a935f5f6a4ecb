"""ComfyUI's progress events from its /ws websocket, through the websocket-client library.

websocket-client is optional: without it `connect` gives None, and the command shows no progress
and waits for the result through /history (comfy_http), so it still runs from any Python.
"""

from __future__ import annotations

import json
import urllib.parse

from .comfy_http import NotComfyUI, ServerUnreachable

try:
    import websocket  # websocket-client, the library ComfyUI's own script_examples use
except ImportError:
    websocket = None

CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 3.0


class EventsLost(Exception):
    """The websocket closed or broke while the prompt ran; its result is still in /history."""


def websocket_url(server_url: str, client_id: str) -> str:
    parts = urllib.parse.urlsplit(server_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws", f"clientId={client_id}", ""))


def connect(server_url: str, client_id: str) -> "ComfyEvents | None":
    """The events ComfyUI sends to `client_id`; None where websocket-client is not installed."""
    if websocket is None:
        return None
    try:
        connection = websocket.create_connection(websocket_url(server_url, client_id), timeout=CONNECT_TIMEOUT_S)
    except websocket.WebSocketBadStatusException as error:
        raise NotComfyUI(f"{server_url} answers, but not like ComfyUI: {error}") from None
    except (websocket.WebSocketException, OSError) as error:
        raise ServerUnreachable(server_url, getattr(error, "strerror", None) or error) from None
    return ComfyEvents(connection)


class ComfyEvents:
    def __init__(self, connection):
        self._connection = connection

    def next_event(self, timeout: float) -> tuple[str, dict] | None:
        """The next event as (type, data); None when nothing came within `timeout` s or the message
        is no event (previews come as binary messages). EventsLost when the websocket ends."""
        self._connection.settimeout(timeout)
        try:
            opcode, payload = self._connection.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as error:
            raise EventsLost(str(error) or type(error).__name__) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise EventsLost("ComfyUI closed the websocket")
        if opcode != websocket.ABNF.OPCODE_TEXT:
            return None
        try:
            event = json.loads(payload)
            return event["type"], event.get("data") or {}
        except (ValueError, TypeError, KeyError):
            return None  # not a ComfyUI event; nothing to show

    def close(self) -> None:
        self._connection.close(timeout=CLOSE_TIMEOUT_S)
