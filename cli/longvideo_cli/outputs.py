"""A finished prompt's outputs (its /history entry): the files and texts it made, where they are, downloads."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .workflow_file import label_if_known

# The keys under which ComfyUI's UI outputs list files: images (also SaveVideo's, flagged animated), gifs, ...
FILE_OUTPUT_KEYS = ("images", "gifs", "videos", "audio")


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

    @property
    def view_path(self) -> str:
        query = urllib.parse.urlencode({"filename": self.filename, "subfolder": self.subfolder, "type": self.folder_type})
        return f"/api/view?{query}"

    def view_url(self, server: str) -> str:
        return server.rstrip("/") + self.view_path


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
        lines.append(f"{label_if_known(workflow, node_id)} text:")
        lines += [f"  {line}" for line in text.splitlines()]
    files = output_files(outputs)
    if files:
        lines.append("files (below ComfyUI's base folder, and their URLs):")
    for file in files:
        note = "  (temporary: ComfyUI deletes it on restart)" if file.folder_type == "temp" else ""
        lines.append(f"  {file.relative_path}  from {label_if_known(workflow, file.node_id)}{note}")
        lines.append(f"    {file.view_url(server)}")
    if not lines:
        lines.append("the prompt produced no files or text")
    return lines


def download_path(directory: Path, file: OutputFile) -> Path:
    target = (directory / file.subfolder / file.filename).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise ValueError(f"{file.relative_path} would be written outside {directory}")
    return target
