"""Write the editor (UI-format) twin of an API-format workflow.

Usage: python workflows/api_to_ui.py OBJECT_INFO.json workflows/api/NAME.json example_workflows/NAME.json

OBJECT_INFO.json is a live server's /object_info; it says which inputs are widgets, in which order
the editor stores their values, and the type of every socket.
"""

from __future__ import annotations

import json
import sys

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# a combo whose chosen option brings its own inputs, named "<combo>.<input>" (e.g. SaveVideo's format)
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
COLUMN_WIDTH, ROW_HEIGHT = 360, 330


def is_widget(spec) -> bool:
    return is_combo(spec) or widget_type(spec) in WIDGET_TYPES


def widget_type(spec) -> str:
    """The widget an input shows: its type, or for an input of several types (e.g. "FLOAT,INT") the one its widgetType names."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return options.get("widgetType", spec[0])


def is_combo(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in ("COMBO", DYNAMIC_COMBO)


def combo_choices(spec) -> list:
    """The values a combo or dynamic combo input takes."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == DYNAMIC_COMBO:
        return [option["key"] for option in spec[1]["options"]]
    return spec[1]["options"]


def default_value(spec):
    options = spec[1] if len(spec) > 1 else {}
    if "default" in options or not is_combo(spec):
        return options.get("default")
    return next(iter(combo_choices(spec)), None)


def ordered_inputs(info: dict) -> list[tuple[str, list]]:
    specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    order = info.get("input_order", {})
    names = order.get("required", []) + order.get("optional", []) or list(specs)
    return [(name, specs[name]) for name in names]


def inputs_in_editor_order(info: dict, values: dict):
    """Yield (name, spec, required) for every input of a node as the editor lays them out.

    A dynamic combo is followed by the inputs of the option chosen in ``values`` (its default when
    absent), depth first, as the editor inserts their widgets right after the combo's. ``values``
    may be filled while iterating: a combo's choice is read only after it has been yielded.
    """
    required = set(info["input"].get("required", {}))

    def expand(name, spec, is_required):
        yield name, spec, is_required
        if spec[0] != DYNAMIC_COMBO:
            return
        chosen = values[name] if name in values else default_value(spec)
        option = next((option for option in spec[1]["options"] if option["key"] == chosen), None)
        for section in ("required", "optional") if option else ():
            for sub_name, sub_spec in option["inputs"].get(section, {}).items():
                yield from expand(f"{name}.{sub_name}", sub_spec, section == "required")

    for name, spec in ordered_inputs(info):
        yield from expand(name, spec, name in required)


def depth_of(node_id: str, prompt: dict, memo: dict) -> int:
    if node_id not in memo:
        sources = [v[0] for v in prompt[node_id]["inputs"].values() if isinstance(v, list)]
        memo[node_id] = 1 + max((depth_of(s, prompt, memo) for s in sources), default=-1)
    return memo[node_id]


def api_to_ui(prompt: dict, object_info: dict) -> dict:
    links, nodes, out_links = [], [], {}
    for node_id, node in prompt.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                src, slot = value
                kind = object_info[prompt[src]["class_type"]]["output"][slot]
                links.append([len(links) + 1, int(src), slot, int(node_id), name, kind])
                out_links.setdefault((src, slot), []).append(len(links))
    depths, rows = {}, {}
    for node_id in sorted(prompt, key=int):
        node, info = prompt[node_id], object_info[prompt[node_id]["class_type"]]
        column = depth_of(node_id, prompt, depths)
        row = rows[column] = rows.get(column, -1) + 1
        inputs, widgets = [], []
        for name, spec, _required in inputs_in_editor_order(info, node["inputs"]):
            value = node["inputs"][name] if name in node["inputs"] else default_value(spec)
            options = spec[1] if len(spec) > 1 else {}
            link = next((row[0] for row in links if row[3] == int(node_id) and row[4] == name), None)
            if is_widget(spec):
                # a widget fed by a link keeps its slot in widgets_values, as the editor saves it
                widgets.append(options.get("default") if link else value)
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                if link:
                    kind = "COMBO" if isinstance(spec[0], list) else spec[0]
                    inputs.append({"name": name, "type": kind, "widget": {"name": name}, "link": link})
            else:
                inputs.append({"name": name, "type": spec[0], "link": link})
        for link in links:
            if link[3] == int(node_id):
                link[4] = [i["name"] for i in inputs].index(link[4])
        outputs = [
            {"name": name, "type": kind, "links": out_links.get((node_id, slot), []), "slot_index": slot}
            for slot, (name, kind) in enumerate(zip(info["output_name"], info["output"]))
        ]
        nodes.append(
            {
                "id": int(node_id),
                "type": node["class_type"],
                "pos": [column * COLUMN_WIDTH, row * ROW_HEIGHT],
                "size": [320, 120 + 26 * len(widgets)],
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": inputs,
                "outputs": outputs,
                "title": node.get("_meta", {}).get("title", node["class_type"]),
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": widgets,
            }
        )
    for order, node in enumerate(sorted(nodes, key=lambda n: (depths[str(n["id"])], n["id"]))):
        node["order"] = order
    return {
        "last_node_id": max(n["id"] for n in nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
        "version": 0.4,
    }


if __name__ == "__main__":
    info_path, api_path, ui_path = sys.argv[1:4]
    with open(info_path) as f:
        info = json.load(f)
    with open(api_path) as f:
        ui = api_to_ui(json.load(f), info)
    with open(ui_path, "w") as f:
        json.dump(ui, f, indent=2)
