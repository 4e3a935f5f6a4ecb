"""ComfyUI's refusals and failures as text that names the node, its class and the input.

The answers come in the shapes of ComfyUI's server.post_prompt, execution.validate_prompt and
PromptExecutor; where 0.8 and 0.33 differ, both are read.
"""

from __future__ import annotations

# The type of validate_prompt's error for a node type it lacks: "invalid_prompt" up to ComfyUI 0.8,
# "missing_node_type" (with the class and node id in extra_info) since.
MISSING_NODE_ERROR_TYPES = ("invalid_prompt", "missing_node_type")
INSTALL_HINT = "Install the node packs that provide them (for example with ComfyUI-Manager) and restart ComfyUI."


def names_a_missing_node_type(answer) -> bool:
    """Whether a refusal may be about a node type ComfyUI lacks, so that its list of node types helps."""
    error = answer.get("error") if isinstance(answer, dict) else None
    return isinstance(error, dict) and error.get("type") in MISSING_NODE_ERROR_TYPES


def missing_node_types(workflow: dict, known_types) -> dict[str, list[str]]:
    """{class_type: [node ids]} for the node types this ComfyUI does not have."""
    missing: dict[str, list[str]] = {}
    for node_id, node in workflow.items():
        if node["class_type"] not in known_types:
            missing.setdefault(node["class_type"], []).append(node_id)
    return missing


def reported_missing_node_type(error: dict) -> dict[str, list[str]]:
    """The one missing node type that ComfyUI 0.33 names in extra_info; its message gives the node's
    title instead, which need not be the class."""
    info = error.get("extra_info") or {}
    if error.get("type") == "missing_node_type" and info.get("class_type") and info.get("node_id") is not None:
        return {info["class_type"]: [str(info["node_id"])]}
    return {}


def explain_rejection(answer, workflow: dict, known_types=None) -> str:
    """Text for a prompt that POST /prompt refused (HTTP 400).

    ComfyUI stops at the first unknown node type; with `known_types` (the keys of /object_info)
    every missing one is named.
    """
    if not isinstance(answer, dict):
        return f"ComfyUI rejected the prompt: {answer}"
    error = answer.get("error") if isinstance(answer.get("error"), dict) else {"message": str(answer.get("error"))}
    missing = missing_node_types(workflow, known_types) if known_types is not None else reported_missing_node_type(error)
    if missing:
        listed = "\n".join(f"  {class_type} (node {', '.join(ids)})" for class_type, ids in missing.items())
        return "ComfyUI does not know these node types:\n" + listed + "\n" + INSTALL_HINT
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
    return f"{node_label_from_event(data)} failed: {data.get('exception_type', 'error')}: {message}\nThe ComfyUI console shows the traceback."


def node_label_from_event(data: dict) -> str:
    return f"node {data.get('node_id')} ({data.get('node_type')})"


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
