"""The README's node reference covers every input of every node the live server lists, with its default."""

import re

from comfy_host import PACK_ROOT

README = (PACK_ROOT / "README.md").read_text()
NODE_HEADING = re.compile(r"^\*\*[^*]+\*\* `(LongVideo\w+)`", re.MULTILINE)


def reference_sections() -> dict[str, str]:
    """Node id -> its README text, from its bold heading to the next node's heading or section."""
    reference = README[README.index("## Nodes") :]
    reference = reference[: reference.index("\n## ", 1)]
    headings = list(NODE_HEADING.finditer(reference))
    ends = [h.start() for h in headings[1:]] + [len(reference)]
    return {h.group(1): reference[h.start() : end] for h, end in zip(headings, ends)}


def documented_default(default) -> list[str]:
    """The ways the README may write a default value."""
    if isinstance(default, bool):
        return ["on" if default else "off"]
    if isinstance(default, float):
        return [f"{default:g}", f"{default:.1f}"]
    return [str(default)]


def test_every_node_input_and_default_is_in_the_readme(comfy_server):
    sections = reference_sections()
    pack_nodes = {name: info for name, info in comfy_server.object_info().items() if info["python_module"].endswith("ComfyUI-LongVideo")}
    assert sorted(sections) == sorted(pack_nodes)
    missing = []
    for node_id, info in pack_nodes.items():
        for group in ("required", "optional"):
            for name, spec in info["input"].get(group, {}).items():
                text = sections[node_id]
                if not re.search(rf"\b{re.escape(name)}\b", text):
                    missing.append(f"{node_id}: input {name}")
                default = spec[1].get("default") if len(spec) > 1 else None
                if default is not None and not any(way in text for way in documented_default(default)):
                    missing.append(f"{node_id}: default of {name} ({default!r})")
    assert not missing, "\n".join(missing)
