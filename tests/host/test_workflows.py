"""Shipped workflows: every UI-format example is the same graph as its API-format twin."""
import json

import pytest

from comfy_host import PACK_ROOT

API_WORKFLOWS = PACK_ROOT / "workflows" / "api"
UI_WORKFLOWS = PACK_ROOT / "example_workflows"
NAMES = sorted(p.stem for p in API_WORKFLOWS.glob("*.json"))


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """What the editor queues for a UI workflow, rebuilt from the node definitions."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        info = object_info[node["type"]]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        values = iter(node["widgets_values"])
        inputs = {}
        for name in order:
            spec = specs[name]
            if isinstance(spec[0], list) or spec[0] in {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}:
                inputs[name] = next(values)
                if len(spec) > 1 and spec[1].get("control_after_generate"):
                    next(values)
        for socket in node["inputs"]:
            if socket["link"] is not None:
                link = links[socket["link"]]
                inputs[socket["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def test_every_api_workflow_has_a_ui_twin():
    assert NAMES, "no API workflows shipped"
    assert sorted(p.stem for p in UI_WORKFLOWS.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_the_same_graph_as_its_api_twin(comfy_server, name):
    api = json.loads((API_WORKFLOWS / f"{name}.json").read_text())
    ui = json.loads((UI_WORKFLOWS / f"{name}.json").read_text())
    rebuilt = ui_to_api(ui, comfy_server.object_info())
    assert rebuilt == {node_id: {"class_type": n["class_type"], "inputs": n["inputs"]} for node_id, n in api.items()}
