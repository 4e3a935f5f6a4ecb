"""Shipped workflows: each is valid against the live server's /object_info, runs on tiny models,
shows in the template browser, and its editor (UI) form is the same graph as its API twin."""

import importlib.util
import json
import urllib.request

import pytest
from comfy_host import PACK_DIR_NAME, PACK_ROOT
from input_media import write_workflow_inputs
from saved_videos import read_video
from tiny_workflows import TEST_STITCH, link_official_model_names, tiny_length, tiny_workflow

API_WORKFLOWS = PACK_ROOT / "workflows" / "api"
UI_WORKFLOWS = PACK_ROOT / "example_workflows"
NAMES = sorted(p.stem for p in API_WORKFLOWS.glob("*.json"))


def _load_api_to_ui():
    """workflows/api_to_ui.py, which wrote the UI twins: its reading of /object_info is the one under test."""
    spec = importlib.util.spec_from_file_location("api_to_ui", PACK_ROOT / "workflows" / "api_to_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_to_ui = _load_api_to_ui()
STITCHED_CHUNKS = 2
# Frames of each workflow's video on tiny models (length 5 latent frames; k-step: 2 chunks of 9;
# stitcher: 2 chunks of 9 sharing 2). LTX-Video: 8 x (5 - 1) + 1; Wan: 4 x (5 - 1) + 1.
EXPECTED_FRAMES = {
    "fifo_cosmos_predict2_2b": 17,
    "fifo_ltxv": 33,
    "fifo_wan21_t2v_1.3B": 17,
    "fifo_wan22_5b_to_file": 17,
    "fifo_wan22_5b_resumable": 17,
    "fifo_wan22_a14b_lightx2v_4step": 17,
    "pavdm_ltxv_anchored": 33,
    "pavdm_cosmos_predict2_2b_extend": 17,
    "pavdm_ltxv": 33,
    "pavdm_wan21_t2v_1.3B_prompt_schedule": 17,
    "pavdm_wan22_5b_extend": 17,
    "kstep_cosmos_predict2_2b": 9 + 8,
    "kstep_ltxv": 9 + 8,  # the second chunk drops its 1 repeated guide frame
    "kstep_wan22_5b": 9 + 4,  # a 5-frame guide tail: 5 repeated frames dropped
    "stitch_chunks": STITCHED_CHUNKS * TEST_STITCH["chunk_length"] - TEST_STITCH["overlap"],
    "fifo_wan22_a14b_t2v": 17,
    "pavdm_wan22_a14b_extend": 17,
    "kstep_wan22_a14b_i2v": 9 + 8,
    "kstep_minimax_h3": 5 + 4,  # H3 chunks of 5 frames
    "pavdm_ltx2_extend": 33,
    "fifo_ltx2_t2v_to_file": 33,
    "pavdm_minimax_h3_extend": 22,  # H3_LENGTH latent frames: 1 + 4 + 4 + 4 + 4, 1 + 4
    "fifo_minimax_h3_to_file": 22,
}


def load(folder, name):
    return json.loads((folder / f"{name}.json").read_text())


def input_spec(info: dict, name: str):
    return info["input"].get("required", {}).get(name) or info["input"].get("optional", {}).get(name)


def accepts(input_type: str, spec: list, output_type: str) -> bool:
    if input_type == "COMFY_MATCHTYPE_V3":
        allowed = spec[1]["template"].get("allowed_types", "*")
        return allowed == "*" or output_type in allowed.split(",")
    return "*" in (input_type, output_type) or output_type in input_type.split(",")


def widget_errors(value, spec) -> list[str]:
    if api_to_ui.is_combo(spec):
        choices = api_to_ui.combo_choices(spec)
        return [] if value in choices else [f"{value!r} is not one of the server's choices {choices}"]
    kind, options = api_to_ui.widget_type(spec), spec[1] if len(spec) > 1 else {}
    expected = {"INT": int, "FLOAT": (int, float), "STRING": str, "BOOLEAN": bool}[kind]
    if not isinstance(value, expected) or (kind != "BOOLEAN" and isinstance(value, bool)):
        return [f"{value!r} is not {kind}"]
    if kind in ("INT", "FLOAT") and not options.get("min", value) <= value <= options.get("max", value):
        return [f"{value} is outside [{options.get('min')}, {options.get('max')}]"]
    return []


def output_type(prompt: dict, object_info: dict, source: str, slot: int) -> str:
    """A match-type output takes the type of whatever feeds the input with its template id."""
    info = object_info[prompt[source]["class_type"]]
    kind = info["output"][slot]
    if kind != "COMFY_MATCHTYPE_V3":
        return kind
    template = info["output_matchtypes"][slot]
    for name, value in prompt[source]["inputs"].items():
        spec = input_spec(info, name)
        if isinstance(value, list) and spec[0] == "COMFY_MATCHTYPE_V3" and spec[1]["template"]["template_id"] == template:
            return output_type(prompt, object_info, *value)
    return kind


def validation_errors(prompt: dict, object_info: dict) -> list[str]:
    """What the server would refuse: unknown nodes or inputs, missing inputs, bad links and values.

    A dynamic combo's value must be one of its options, and the inputs of the chosen option are
    checked like the node's own (named "<combo>.<input>").
    """
    errors = []
    for node_id, node in prompt.items():
        info = object_info.get(node["class_type"])
        if info is None:
            errors.append(f"node {node_id}: unknown node type {node['class_type']}")
            continue
        where = f"node {node_id} ({node['class_type']})"
        specs = {name: (spec, required) for name, spec, required in api_to_ui.inputs_in_editor_order(info, node["inputs"])}
        errors += [f"{where}: required input {name} missing" for name, (_, required) in specs.items() if required and name not in node["inputs"]]
        for name, value in node["inputs"].items():
            spec = specs.get(name, (None,))[0]
            if spec is None:
                errors.append(f"{where}: no input named {name}")
            elif isinstance(value, list):
                source, slot = value
                outputs = object_info[prompt[source]["class_type"]]["output"] if source in prompt else []
                if slot >= len(outputs):
                    errors.append(f"{where}.{name}: links to a missing output {value}")
                elif not accepts("COMBO" if isinstance(spec[0], list) else spec[0], spec, output_type(prompt, object_info, source, slot)):
                    errors.append(f"{where}.{name}: takes {spec[0]}, linked to {output_type(prompt, object_info, source, slot)}")
            elif api_to_ui.is_widget(spec):
                errors += [f"{where}.{name}: {e}" for e in widget_errors(value, spec)]
            else:
                errors.append(f"{where}.{name}: a {spec[0]} socket needs a link, got {value!r}")
    return errors


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """What the editor queues for a UI workflow, rebuilt from the node definitions."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        info = object_info[node["type"]]
        values = iter(node["widgets_values"])
        inputs = {}
        for name, spec, _required in api_to_ui.inputs_in_editor_order(info, inputs):
            if api_to_ui.is_widget(spec):
                inputs[name] = next(values)
                if len(spec) > 1 and spec[1].get("control_after_generate"):
                    next(values)
        assert next(values, None) is None, f"node {node['id']} ({node['type']}) has more widget values than widgets"
        for socket in node["inputs"]:
            if socket["link"] is not None:
                link = links[socket["link"]]
                inputs[socket["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


@pytest.fixture(scope="module")
def workflow_server(comfy_server, tiny_model_names):
    """The test server with the official model file names and the input files the workflows load."""
    link_official_model_names(comfy_server.base_dir / "models", tiny_model_names)
    write_workflow_inputs(comfy_server.base_dir / "input", chunk_frames=EXPECTED_FRAMES["stitch_chunks"] + TEST_STITCH["overlap"])
    return comfy_server


def test_every_api_workflow_has_a_ui_twin_and_a_known_frame_count():
    assert NAMES, "no API workflows shipped"
    assert sorted(p.stem for p in UI_WORKFLOWS.glob("*.json")) == NAMES
    assert sorted(EXPECTED_FRAMES) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_the_same_graph_as_its_api_twin(comfy_server, name):
    rebuilt = ui_to_api(load(UI_WORKFLOWS, name), comfy_server.object_info())
    api = load(API_WORKFLOWS, name)
    assert rebuilt == {node_id: {"class_type": n["class_type"], "inputs": n["inputs"]} for node_id, n in api.items()}


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_as_shipped_is_valid_against_the_live_object_info(workflow_server, name):
    assert validation_errors(load(API_WORKFLOWS, name), workflow_server.object_info()) == []


def test_the_validation_catches_what_the_server_would_refuse(workflow_server):
    prompt = load(API_WORKFLOWS, "fifo_ltxv")
    sampler = next(n for n in prompt.values() if n["class_type"] == "LongVideoDiagonalQueueSampler")
    sampler["inputs"].update(window=0, start="somewhere", eta="high", sigmas=["1", 0])
    del sampler["inputs"]["latent"]
    prompt["99"] = {"class_type": "NoSuchNode", "inputs": {}}
    prompt["1"]["inputs"]["ckpt_name"] = "not_downloaded.safetensors"
    save = next(n for n in prompt.values() if n["class_type"] == "SaveVideo")
    save["inputs"].update({"format": "webm", "format.codec": "h264", "format.quality": 5})  # webm offers auto and av1
    errors = "\n".join(validation_errors(prompt, workflow_server.object_info()))
    for expected in (
        "unknown node type NoSuchNode",
        "required input latent missing",
        ".window: 0 is outside",
        ".start: 'somewhere' is not one",
        ".eta: 'high' is not FLOAT",
        ".sigmas: takes SIGMAS, linked to MODEL",
        "'not_downloaded.safetensors' is not one",
        ".format.codec: 'h264' is not one of the server's choices ['auto', 'av1']",
        "no input named format.quality",
    ):
        assert expected in errors


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_on_tiny_models_and_saves_its_video(workflow_server, tiny_model_names, name):
    prompt = tiny_workflow(name, tiny_model_names, length=tiny_length(name))
    assert validation_errors(prompt, workflow_server.object_info()) == []
    entry = workflow_server.run_prompt(prompt)
    object_info = workflow_server.object_info()
    output_nodes = {node_id for node_id, node in prompt.items() if object_info[node["class_type"]]["output_node"]}
    assert output_nodes and output_nodes <= set(entry["outputs"])
    videos = [item for node_id in output_nodes for item in entry["outputs"][node_id].get("images", [])]
    assert len(videos) == 1
    frames, size, _, _ = read_video(workflow_server.output_dir / videos[0]["subfolder"] / videos[0]["filename"])
    assert frames == EXPECTED_FRAMES[name]


def test_template_browser_lists_every_editor_workflow(workflow_server):
    with urllib.request.urlopen(workflow_server.url + "/api/workflow_templates") as answer:
        templates = json.load(answer)
    assert sorted(templates[PACK_DIR_NAME]) == NAMES
    for name in NAMES:
        with urllib.request.urlopen(f"{workflow_server.url}/api/workflow_templates/{PACK_DIR_NAME}/{name}.json") as answer:
            assert json.load(answer) == load(UI_WORKFLOWS, name)


@pytest.mark.parametrize("name", ["pavdm_ltx2_extend", "fifo_ltx2_t2v_to_file", "pavdm_minimax_h3_extend", "fifo_minimax_h3_to_file"])
def test_sound_workflows_save_the_sound_with_the_video(workflow_server, tiny_model_names, name):
    import av

    entry = workflow_server.run_prompt(tiny_workflow(name, tiny_model_names, length=tiny_length(name)))
    [video] = [item for output in entry["outputs"].values() for item in output.get("images", [])]
    with av.open(str(workflow_server.output_dir / video["subfolder"] / video["filename"])) as container:
        [picture], [sound] = container.streams.video, container.streams.audio
        frames = sum(1 for _ in container.decode(video=0))
        fps = float(picture.average_rate)
        container.seek(0)
        samples = sum(frame.samples for frame in container.decode(audio=0))
        seconds = samples / sound.sample_rate
    assert frames == EXPECTED_FRAMES[name]
    # the sound lasts as long as the picture, to within an audio codec frame (AAC: 1024 samples)
    assert abs(seconds - frames / fps) <= 1024 / sound.sample_rate + 1 / fps, (seconds, frames / fps)
