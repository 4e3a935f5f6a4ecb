"""Loading an API-format workflow file and naming its nodes."""

from __future__ import annotations

import json
from pathlib import Path

from .exit_codes import UsageError

PACK_ROOT = Path(__file__).resolve().parents[2]


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
    message = (
        f'{path} is an editor (UI-format) workflow, with "nodes" and "links"; this command needs the '
        "API format. Open it in ComfyUI and save it with Workflow > Export (API)"
    )
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


def label_if_known(workflow: dict, node_id: str) -> str:
    """node_label for a node of the workflow; ComfyUI's messages can name nodes it added itself."""
    return node_label(workflow, node_id) if node_id in workflow else f"node {node_id}"
