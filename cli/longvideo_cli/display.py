"""What the command prints while a prompt runs: one updating progress line on a terminal, and the
line to show for each of ComfyUI's progress events."""

from __future__ import annotations

import sys

from .workflow_file import label_if_known


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
        return f"running {label_if_known(workflow, str(data['node']))}"
    if event == "progress":
        value, maximum = data.get("value", 0), data.get("max", 0)
        percent = f" ({100 * value // maximum}%)" if maximum else ""
        return f"{label_if_known(workflow, str(data.get('node')))}: step {value}/{maximum}{percent}"
    if event == "executed" and data.get("output"):
        return f"output from {label_if_known(workflow, str(data.get('node')))}"
    return None
