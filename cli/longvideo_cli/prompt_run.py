"""One prompt on ComfyUI, from queueing it to its report: progress, Ctrl-C, outputs and downloads."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from . import comfy_websocket
from .comfy_http import ComfyHttp, HttpError, NotComfyUI, ServerUnreachable
from .comfy_websocket import ComfyEvents, EventsLost
from .display import Display, describe_event
from .exit_codes import EXIT_INTERRUPTED, EXIT_PROMPT_FAILED, EXIT_SUCCESS
from .explain import explain_rejection, failure_text, names_a_missing_node_type, node_error_lines, node_label_from_event, status_message
from .outputs import download_path, output_files, report_outputs

# After Ctrl-C, how long to wait for ComfyUI to confirm that it stopped the prompt.
INTERRUPT_CONFIRM_S = 15.0
# The longest single wait for an event, so that a --timeout is noticed while ComfyUI is silent.
EVENT_WAIT_S = 1.0
TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
NO_PROGRESS_NOTE = "no progress shown: the websocket-client package is not installed (pip install websocket-client); waiting for the result through /history"


class PromptRun:
    def __init__(self, http: ComfyHttp, workflow: dict, display: Display, timeout: float | None, download_dir: Path | None):
        self.http, self.workflow, self.display = http, workflow, display
        self.timeout, self.download_dir = timeout, download_dir
        self.prompt_id = str(uuid.uuid4())

    def execute(self) -> int:
        client_id = uuid.uuid4().hex
        # Listen before queueing, so that none of the prompt's events is sent before we hear them.
        events = comfy_websocket.connect(self.http.url, client_id)
        started = time.monotonic()
        deadline = started + self.timeout if self.timeout else None
        try:
            rejection = self._queue(client_id)
            if rejection:
                self.display.error(rejection)
                return EXIT_PROMPT_FAILED
            if events is None:
                self.display.line(NO_PROGRESS_NOTE)
            else:
                self._follow(events, deadline)
            entry = self.http.wait_for_finished_entry(self.prompt_id, deadline)
        except KeyboardInterrupt:
            self._cancel()
            return EXIT_INTERRUPTED
        finally:
            if events is not None:
                events.close()
        if entry is None:
            self.display.error(f"the prompt did not finish within {self.timeout:g} s; it keeps running on ComfyUI (prompt id {self.prompt_id}).")
            return EXIT_PROMPT_FAILED
        return self._report(entry, time.monotonic() - started)

    def _queue(self, client_id: str) -> str | None:
        """POST /prompt; the reason when ComfyUI refuses it."""
        payload = {"prompt": self.workflow, "client_id": client_id, "prompt_id": self.prompt_id}
        try:
            answer = self.http.post_json("/prompt", payload)
        except HttpError as error:
            if error.status == 404:
                # ComfyUI always has POST /prompt; without the websocket this is the first sign of another server.
                raise NotComfyUI(f"{self.http.url} answers, but not like ComfyUI: {error}") from None
            if error.status != 400:
                return f"ComfyUI answered HTTP {error.status} to POST /prompt: {error.answer()}"
            rejection = error.answer()
            return explain_rejection(rejection, self.workflow, self._known_node_types(rejection))
        self.prompt_id = answer.get("prompt_id", self.prompt_id)
        self.display.line(f"queued prompt {self.prompt_id} on {self.http.url}")
        skipped = node_error_lines(answer.get("node_errors") or {})
        if skipped:
            self.display.line("some outputs are invalid and will not run:\n" + "\n".join(skipped))
        return None

    def _known_node_types(self, rejection) -> set | None:
        """Node types ComfyUI has, asked only for the rejection that names an unknown one."""
        if not names_a_missing_node_type(rejection):
            return None
        try:
            return set(self.http.get_json("/object_info"))
        except (HttpError, ServerUnreachable, ValueError):
            return None

    def _follow(self, events: ComfyEvents, deadline: float | None) -> None:
        """Show our prompt's progress until it ends, the websocket is lost or the deadline passes."""
        while True:
            wait = EVENT_WAIT_S if deadline is None else min(EVENT_WAIT_S, deadline - time.monotonic())
            if wait <= 0:
                return
            try:
                event = events.next_event(wait)
            except EventsLost as error:
                self.display.line(f"lost the websocket ({error}); waiting for the result through /history")
                return
            if event is None:
                continue
            kind, data = event
            if data.get("prompt_id", self.prompt_id) != self.prompt_id:
                continue
            if kind in TERMINAL_EVENTS or (kind == "executing" and data.get("node") is None and "prompt_id" in data):
                return
            text = describe_event(kind, data, self.workflow)
            if text is not None:
                (self.display.progress if kind == "progress" else self.display.line)(text)

    def _cancel(self) -> None:
        """After Ctrl-C: stop our prompt if it runs, drop it if it waits; leave other prompts alone."""
        self.display.line("Ctrl-C: stopping the prompt")
        try:
            running, waiting = self.http.queue_ids()
            if self.prompt_id in running:
                self.http.interrupt(self.prompt_id)
                entry = self.http.wait_for_finished_entry(self.prompt_id, time.monotonic() + INTERRUPT_CONFIRM_S)
                interrupted = status_message(entry, "execution_interrupted") if entry else None
                self.display.line(f"ComfyUI interrupted it at {node_label_from_event(interrupted)}" if interrupted else "asked ComfyUI to interrupt it")
            elif self.prompt_id in waiting:
                self.http.delete_from_queue(self.prompt_id)
                self.display.line("removed it from ComfyUI's queue")
        except (ServerUnreachable, HttpError, ValueError) as error:
            self.display.error(f"could not stop the prompt on ComfyUI: {error}")

    def _report(self, entry: dict, seconds: float) -> int:
        outputs = entry.get("outputs") or {}
        status = entry["status"]
        succeeded = status.get("status_str") == "success"
        if succeeded:
            self.display.line(f"finished in {seconds:.1f} s")
        if succeeded or outputs:
            for line in report_outputs(outputs, self.workflow, self.http.url):
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
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.http.get_bytes(file.view_path))
            except (ValueError, OSError, HttpError) as error:
                self.display.error(f"could not download {file.relative_path}: {error}")
                return EXIT_PROMPT_FAILED
            self.display.line(f"downloaded {target}")
        return EXIT_SUCCESS
