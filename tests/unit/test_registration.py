"""Node IDs stay discoverable without importing ComfyUI: read the sources as the scanners do.

ComfyUI-Manager's and the Registry's scanners find V1 IDs in literal ``NODE_CLASS_MAPPINGS`` dicts
and V3 IDs in literal ``io.Schema(node_id=...)`` calls inside ``define_schema``; ComfyUI itself
takes the legacy path for a package root that defines ``NODE_CLASS_MAPPINGS``.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def schema_node_ids() -> dict[str, str]:
    ids = {}
    for path in (ROOT / "nodes").glob("*.py"):
        for cls in (n for n in ast.walk(parsed(path)) if isinstance(n, ast.ClassDef)):
            if not any(isinstance(b, ast.Attribute) and b.attr == "ComfyNode" for b in cls.bases):
                continue
            schema = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "define_schema")
            calls = [c for c in ast.walk(schema) if isinstance(c, ast.Call) and getattr(c.func, "attr", None) == "Schema"]
            node_id = next(k.value for k in calls[0].keywords if k.arg == "node_id")
            assert isinstance(node_id, ast.Constant), f"{cls.name}: node_id must be a string literal"
            ids[cls.name] = node_id.value
    return ids


def literal_mapping() -> dict[str, str]:
    module = parsed(ROOT / "nodes" / "__init__.py")
    assignment = next(n for n in module.body if isinstance(n, ast.Assign) and n.targets[0].id == "NODE_CLASS_MAPPINGS")
    return {key.value: value.id for key, value in zip(assignment.value.keys, assignment.value.values)}


def test_every_node_has_a_literal_schema_id_listed_in_the_literal_mapping():
    ids = schema_node_ids()
    assert len(ids) >= 4
    assert literal_mapping() == {node_id: cls for cls, node_id in ids.items()}


def test_node_ids_are_stable_and_prefixed():
    assert all(node_id.startswith("LongVideo") for node_id in literal_mapping())
    assert {"LongVideoDiagonalQueueSampler", "LongVideoLatentPartition", "LongVideoLookahead"} <= set(literal_mapping())


def test_package_root_takes_the_v3_path():
    root = parsed(ROOT / "__init__.py")
    names = {t.id for n in ast.walk(root) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    imported = {a.asname or a.name for n in ast.walk(root) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "NODE_CLASS_MAPPINGS" not in names | imported
    assert "comfy_entrypoint" in imported


def test_samplers_never_import_comfyui():
    for path in (ROOT / "samplers").glob("*.py"):
        for node in ast.walk(parsed(path)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(m.split(".")[0] in {"comfy", "comfy_api", "nodes", "folder_paths"} for m in modules), path
