"""cli/run_workflow.py and its longvideo_cli package without ComfyUI: workflows, overrides,
ComfyUI's answers, and whole runs against a stand-in server (fake_comfy_server.py), with
websocket-client and without it.

Server answers are built in the shapes that ComfyUI's server.post_prompt, execution.validate_prompt
and PromptExecutor produce.
"""

import io
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fake_comfy_server import FakeComfy

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli" / "run_workflow.py"
sys.path.insert(0, str(CLI.parent))  # as when the command runs: its package sits next to it

import run_workflow  # noqa: E402
from longvideo_cli import comfy_websocket  # noqa: E402
from longvideo_cli.display import Display, describe_event  # noqa: E402
from longvideo_cli.exit_codes import UsageError  # noqa: E402
from longvideo_cli.explain import explain_execution_error, explain_rejection, failure_text  # noqa: E402
from longvideo_cli.outputs import OutputFile, download_path, output_files, report_outputs  # noqa: E402
from longvideo_cli.overrides import Overrides, apply_overrides  # noqa: E402
from longvideo_cli.prompt_run import NO_PROGRESS_NOTE  # noqa: E402
from longvideo_cli.workflow_file import load_workflow  # noqa: E402

API_WORKFLOWS = sorted((ROOT / "workflows" / "api").glob("*.json"))
# Shipped workflows without one prompt to replace: a prompt schedule, and stitching that has no prompt.
WITHOUT_ONE_PROMPT = {
    "pavdm_wan21_t2v_1.3B_prompt_schedule": "the positive conditioning comes from 2 text encoders",
    "stitch_chunks": "no text encoder found",
}


def shipped(name):
    return load_workflow(ROOT / "workflows" / "api" / f"{name}.json")


def apply(workflow, **options):
    return apply_overrides(workflow, Overrides(**options))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def test_every_shipped_api_workflow_loads():
    assert API_WORKFLOWS
    for path in API_WORKFLOWS:
        assert all("class_type" in node for node in load_workflow(path).values())


def test_an_editor_workflow_is_refused_with_the_export_hint_and_its_api_twin():
    with pytest.raises(UsageError) as error:
        load_workflow(ROOT / "example_workflows" / "fifo_ltxv.json")
    assert "Export (API)" in str(error.value)
    assert str(ROOT / "workflows" / "api" / "fifo_ltxv.json") in str(error.value)


def test_an_editor_workflow_without_twin_points_to_the_api_folder(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(UsageError, match="Export \\(API\\).*workflows.api"):
        load_workflow(path)


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "not an API-format workflow"),
        ('{"1": {"inputs": {}}}', "node '1' has no class_type"),
    ],
)
def test_files_that_are_no_api_workflow_are_refused(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=reason):
        load_workflow(path)


def test_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        load_workflow(tmp_path / "nowhere.json")


# ---------------------------------------------------------------------------------------------
# --prompt / --negative
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [p for p in API_WORKFLOWS if p.stem not in WITHOUT_ONE_PROMPT], ids=lambda path: path.stem)
def test_prompt_and_negative_reach_the_text_encoders_of_every_shipped_workflow(path):
    workflow = load_workflow(path)
    changed, changes = apply(workflow, prompt="a cat", negative="blurry")
    # In every shipped workflow node 5 is the prompt and node 6 the negative prompt;
    # the LTX-Video ones reach them through LTXVConditioning's two outputs.
    assert changed["5"]["inputs"]["text"] == "a cat"
    assert changed["6"]["inputs"]["text"] == "blurry"
    assert [(change.node_id, change.input_name) for change in changes] == [("5", "text"), ("6", "text")]
    assert workflow["5"]["inputs"]["text"] != "a cat", "the loaded workflow must stay as it was"


@pytest.mark.parametrize("name", sorted(WITHOUT_ONE_PROMPT))
def test_prompt_is_refused_where_a_shipped_workflow_has_no_single_prompt(name):
    with pytest.raises(UsageError, match=WITHOUT_ONE_PROMPT[name]):
        apply(shipped(name), prompt="a cat")


def test_the_ltxv_workflow_really_routes_its_prompts_through_ltxv_conditioning():
    workflow = shipped("fifo_ltxv")
    assert workflow["11"]["inputs"]["positive"] == ["15", 0]
    assert workflow["15"]["class_type"] == "LTXVConditioning"


def test_the_negative_follows_output_1_of_a_node_that_conditions_both_prompts():
    workflow = shipped("fifo_ltxv")
    # swap the encoders feeding LTXVConditioning: the sampler's positive now comes from node 6
    conditioning = workflow["15"]["inputs"]
    conditioning["positive"], conditioning["negative"] = ["6", 0], ["5", 0]
    changed, _ = apply(workflow, prompt="a cat")
    assert changed["6"]["inputs"]["text"] == "a cat"


def test_a_single_prompt_through_a_prompt_frame_range_is_found():
    workflow = shipped("fifo_wan21_t2v_1.3B")
    workflow["20"] = {"class_type": "LongVideoPromptFrameRange", "inputs": {"conditioning": ["5", 0], "start_frame": 0, "end_frame": -1}}
    workflow["11"]["inputs"]["positive"] = ["20", 0]
    changed, _ = apply(workflow, prompt="a cat")
    assert changed["5"]["inputs"]["text"] == "a cat"


def test_a_prompt_schedule_is_ambiguous_and_points_to_set():
    workflow = shipped("fifo_ltxv")
    workflow["81"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "later", "clip": ["2", 0]}}
    workflow["82"] = {"class_type": "LongVideoPromptFrameRange", "inputs": {"conditioning": ["5", 0], "start_frame": 0, "end_frame": 30}}
    workflow["83"] = {"class_type": "LongVideoPromptFrameRange", "inputs": {"conditioning": ["81", 0], "start_frame": 30, "end_frame": -1}}
    workflow["84"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["82", 0], "conditioning_2": ["83", 0]}}
    workflow["15"]["inputs"]["positive"] = ["84", 0]
    with pytest.raises(UsageError) as error:
        apply(workflow, prompt="a cat")
    message = str(error.value)
    assert "node 5 (CLIPTextEncode)" in message and "node 81 (CLIPTextEncode)" in message
    assert "--set ID.text=" in message
    changed, _ = apply(workflow, negative="blurry")  # the negative side is still one encoder
    assert changed["6"]["inputs"]["text"] == "blurry"


def test_a_workflow_without_text_encoder_says_to_use_set():
    workflow = shipped("fifo_wan21_t2v_1.3B")
    workflow["5"] = {"class_type": "LongVideoTestConditioning", "inputs": {"width": 4096, "tokens": 8, "seed": 5, "scale": 1.0}}
    with pytest.raises(UsageError, match="no text encoder found behind a sampler's positive input.*--set"):
        apply(workflow, prompt="a cat")


def test_an_encoder_feeding_both_sides_is_not_changed_for_one_of_them():
    workflow = shipped("fifo_wan21_t2v_1.3B")
    workflow["20"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["5", 0]}}
    workflow["11"]["inputs"]["negative"] = ["20", 0]
    with pytest.raises(UsageError, match="feeds both the positive and the negative"):
        apply(workflow, negative="blurry")


def test_a_text_that_comes_from_another_node_points_there():
    workflow = shipped("fifo_wan21_t2v_1.3B")
    workflow["30"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a fox"}}
    workflow["5"]["inputs"]["text"] = ["30", 0]
    with pytest.raises(UsageError, match="comes from node 30 \\(PrimitiveStringMultiline\\).*--set 30.INPUT"):
        apply(workflow, prompt="a cat")


# ---------------------------------------------------------------------------------------------
# --seed, --frames, --model, --set
# ---------------------------------------------------------------------------------------------


def test_seed_sets_every_seed_and_noise_seed_input():
    workflow = shipped("fifo_ltxv")
    workflow["30"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}}
    workflow["31"] = {"class_type": "SomeNode", "inputs": {"seed": ["30", 0]}}
    changed, changes = apply(workflow, seed=7)
    assert changed["11"]["inputs"]["seed"] == 7 and changed["30"]["inputs"]["noise_seed"] == 7
    assert changed["31"]["inputs"]["seed"] == ["30", 0], "a linked seed is left linked"
    assert sorted(change.node_id for change in changes) == ["11", "30"]
    assert changes[0].describe() == "node 11 (LongVideoDiagonalQueueSampler) seed: 42 -> 7"


def test_seed_on_a_workflow_without_seed_is_an_error():
    with pytest.raises(UsageError, match="no seed or noise_seed"):
        apply({"1": {"class_type": "PreviewAny", "inputs": {"source": 1}}}, seed=7)


@pytest.mark.parametrize(
    "name, sampler",
    [
        ("fifo_ltxv", "LongVideoDiagonalQueueSampler"),
        ("fifo_wan21_t2v_1.3B", "LongVideoDiagonalQueueSampler"),
        ("pavdm_ltxv", "LongVideoProgressiveARSampler"),
        ("pavdm_wan22_5b_extend", "LongVideoProgressiveARSampler"),
    ],
)
def test_frames_sets_the_samplers_length_in_latent_frames(name, sampler):
    workflow = shipped(name)
    old = workflow["11"]["inputs"]["length"]
    changed, [change] = apply(workflow, frames=100)
    assert changed["11"]["inputs"]["length"] == 100
    assert change.describe() == f"node 11 ({sampler}) length: {old} -> 100 latent frames"


@pytest.mark.parametrize("name", ["kstep_ltxv", "kstep_wan22_5b"])
def test_frames_on_the_noise_search_points_to_its_chunks(name):
    with pytest.raises(UsageError, match="LongVideoKStepNoiseSearch.*--set 11.chunks=N"):
        apply(shipped(name), frames=100)


def test_frames_without_a_long_video_sampler_is_an_error():
    with pytest.raises(UsageError, match="has neither"):
        apply({"1": {"class_type": "KSampler", "inputs": {"seed": 1}}}, frames=10)


def test_model_replaces_the_file_name_wherever_it_is_used():
    changed, changes = apply(shipped("fifo_ltxv"), models=("ltx-video-2b-v0.9.5.safetensors=my_ltxv.safetensors",))
    assert changed["1"]["inputs"]["ckpt_name"] == "my_ltxv.safetensors"
    assert [(change.node_id, change.input_name) for change in changes] == [("1", "ckpt_name")]


def test_model_that_the_workflow_does_not_use_lists_the_files_it_uses():
    with pytest.raises(UsageError) as error:
        apply(shipped("fifo_wan21_t2v_1.3B"), models=("ltx-video-2b-v0.9.5.safetensors=x.safetensors",))
    message = str(error.value)
    for used in ("wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors"):
        assert used in message


@pytest.mark.parametrize("spec", ["no-equals", "=new", "old="])
def test_model_needs_old_and_new(spec):
    with pytest.raises(UsageError, match="OLD=NEW"):
        apply(shipped("fifo_ltxv"), models=(spec,))


@pytest.mark.parametrize(
    "spec, value",
    [
        ("11.window=21", 21),
        ("11.eta=0.5", 0.5),
        ("10.enabled=false", False),
        ('11.positive=["6", 0]', ["6", 0]),
        ("5.text=a fox, in snow", "a fox, in snow"),
        ("5.text=", ""),
        ('5.text="42"', "42"),
    ],
)
def test_set_reads_json_or_else_text(spec, value):
    node_id, input_name = spec.split("=")[0].split(".")
    changed, [change] = apply(shipped("fifo_wan21_t2v_1.3B"), sets=(spec,))
    assert changed[node_id]["inputs"][input_name] == value
    assert change.new == value


def test_set_wins_over_the_other_options_and_can_add_an_input():
    changed, changes = apply(shipped("fifo_ltxv"), seed=7, sets=("11.seed=9", '11.guider=["40", 0]'))
    assert changed["11"]["inputs"]["seed"] == 9
    assert changes[-1].describe() == 'node 11 (LongVideoDiagonalQueueSampler) guider: (not set) -> ["40", 0]'


def test_set_on_an_unknown_node_lists_the_nodes():
    with pytest.raises(UsageError, match="no node '99'.*11 \\(LongVideoDiagonalQueueSampler\\)"):
        apply(shipped("fifo_ltxv"), sets=("99.length=3",))


@pytest.mark.parametrize("spec", ["11length=3", "11.length", ".length=3", "11.=3"])
def test_set_needs_id_input_and_value(spec):
    with pytest.raises(UsageError, match="ID.INPUT=VALUE"):
        apply(shipped("fifo_ltxv"), sets=(spec,))


def test_long_texts_are_shortened_in_the_summary():
    _, [change] = apply(shipped("fifo_ltxv"), prompt="x" * 200)
    assert len(change.describe()) < 200 and change.describe().endswith('..."')


# ---------------------------------------------------------------------------------------------
# ComfyUI's answers
# ---------------------------------------------------------------------------------------------


def unknown_node_rejection(class_type, node_id):
    """execution.validate_prompt stops at the first node whose class_type ComfyUI lacks (ComfyUI 0.8)."""
    return {
        "error": {
            "type": "invalid_prompt",
            "message": f"Cannot execute because node {class_type} does not exist.",
            "details": f"Node ID '#{node_id}'",
            "extra_info": {},
        },
        "node_errors": {},
    }


def unknown_node_rejection_033(class_type, node_id, title=None):
    """The same in ComfyUI 0.33: the message names the node's title (its _meta.title, else the class)."""
    title = title or class_type
    return {
        "error": {
            "type": "missing_node_type",
            "message": f"Node '{title}' not found. The custom node may not be installed.",
            "details": f"Node ID '#{node_id}'",
            "extra_info": {"node_id": node_id, "class_type": class_type, "node_title": title},
        },
        "node_errors": {},
    }


@pytest.mark.parametrize("rejection", [unknown_node_rejection, unknown_node_rejection_033], ids=["0.8", "0.33"])
def test_unknown_node_types_are_all_named_with_the_known_types(rejection):
    workflow = shipped("fifo_ltxv")
    workflow["11"]["class_type"] = "LongVideoDiagonalQueueSampler"
    workflow["40"] = {"class_type": "SomePackNode", "inputs": {}}
    workflow["41"] = {"class_type": "SomePackNode", "inputs": {}}
    known = {node["class_type"] for node in workflow.values()} - {"SomePackNode", "LTXVConditioning"}
    text = explain_rejection(rejection("LTXVConditioning", "15"), workflow, known)
    assert "ComfyUI does not know these node types" in text
    assert "LTXVConditioning (node 15)" in text and "SomePackNode (node 40, 41)" in text


def test_an_unknown_node_type_without_the_known_types_shows_comfyuis_message():
    text = explain_rejection(unknown_node_rejection("SomePackNode", "40"), shipped("fifo_ltxv"), None)
    assert text == "ComfyUI rejected the prompt: Cannot execute because node SomePackNode does not exist.\n  Node ID '#40'"


def test_comfyui_033_names_the_title_of_an_unknown_node_and_the_class_is_taken_from_extra_info():
    rejection = unknown_node_rejection_033("SomePackNode", "40", title="Lookahead Denoising (FIFO)")
    assert explain_rejection(rejection, shipped("fifo_ltxv"), None).splitlines() == [
        "ComfyUI does not know these node types:",
        "  SomePackNode (node 40)",
        "Install the node packs that provide them (for example with ComfyUI-Manager) and restart ComfyUI.",
    ]


def test_a_dependency_cycle_names_its_nodes():
    """ComfyUI 0.33's validate_inputs reports a cycle on each of its nodes, without an input name."""
    cycle = "10 (LongVideoLookahead) -> 11 (LongVideoDiagonalQueueSampler) -> 10 (LongVideoLookahead)"
    answer = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": f"Dependency cycle detected: {cycle}",
            "extra_info": {},
        },
        "node_errors": {
            node_id: {
                "class_type": class_type,
                "dependent_outputs": ["14"],
                "errors": [
                    {
                        "type": "dependency_cycle",
                        "message": "Dependency cycle detected",
                        "details": cycle,
                        "extra_info": {"node_id": node_id, "cycle_nodes": ["10", "11"]},
                    }
                ],
            }
            for node_id, class_type in (("10", "LongVideoLookahead"), ("11", "LongVideoDiagonalQueueSampler"))
        },
    }
    assert explain_rejection(answer, shipped("fifo_ltxv"), None).splitlines() == [
        "ComfyUI rejected the prompt: Prompt outputs failed validation",
        f"  node 10 (LongVideoLookahead): Dependency cycle detected ({cycle})",
        f"  node 11 (LongVideoDiagonalQueueSampler): Dependency cycle detected ({cycle})",
    ]


def test_invalid_inputs_give_one_line_per_node_and_input():
    answer = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "Value 0 smaller than min of 1: length\n...",
            "extra_info": {},
        },
        "node_errors": {
            "11": {
                "class_type": "LongVideoDiagonalQueueSampler",
                "dependent_outputs": ["14"],
                "errors": [
                    {
                        "type": "value_smaller_than_min",
                        "message": "Value 0 smaller than min of 1",
                        "details": "length",
                        "extra_info": {"input_name": "length", "input_config": ["INT", {"min": 1}], "received_value": 0},
                    },
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": "window - window must be at least 2",
                        "extra_info": {"input_name": "window"},
                    },
                ],
            },
            "1": {
                "class_type": "CheckpointLoaderSimple",
                "dependent_outputs": ["14"],
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "ckpt_name: 'x.safetensors' not in (list of length 31)",
                        "extra_info": {"input_name": "ckpt_name", "input_config": None, "received_value": "x.safetensors"},
                    },
                ],
            },
        },
    }
    assert explain_rejection(answer, shipped("fifo_ltxv"), None).splitlines() == [
        "ComfyUI rejected the prompt: Prompt outputs failed validation",
        "  node 11 (LongVideoDiagonalQueueSampler) input length: Value 0 smaller than min of 1",
        "  node 11 (LongVideoDiagonalQueueSampler) input window: Custom validation failed for node (window - window must be at least 2)",
        "  node 1 (CheckpointLoaderSimple) input ckpt_name: Value not in list (ckpt_name: 'x.safetensors' not in (list of length 31))",
    ]


def test_a_rejection_without_node_errors_shows_its_details():
    answer = {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": {}}
    assert explain_rejection(answer, shipped("fifo_ltxv"), None) == "ComfyUI rejected the prompt: Prompt has no outputs"


def test_an_execution_error_names_node_class_and_exception():
    data = {
        "prompt_id": "p",
        "node_id": "12",
        "node_type": "VAEDecode",
        "executed": ["1"],
        "exception_message": "test VAE failure\n",
        "exception_type": "RuntimeError",
        "traceback": ["  File ..."],
        "current_inputs": {},
        "current_outputs": [],
    }
    assert explain_execution_error(data).splitlines()[0] == "node 12 (VAEDecode) failed: RuntimeError: test VAE failure"
    status = {"status_str": "error", "completed": False, "messages": [["execution_start", {"prompt_id": "p"}], ["execution_error", data]]}
    assert failure_text(status) == explain_execution_error(data)


def test_an_interruption_by_someone_else_is_a_failure_that_says_so():
    status = {
        "status_str": "error",
        "completed": False,
        "messages": [["execution_interrupted", {"prompt_id": "p", "node_id": "11", "node_type": "LongVideoDiagonalQueueSampler", "executed": []}]],
    }
    assert failure_text(status) == "the prompt was interrupted at node 11 (LongVideoDiagonalQueueSampler), not by this command."


HISTORY_OUTPUTS = {
    # SaveVideo's ui (ui.PreviewVideo): the file under "images", flagged animated
    "14": {"images": [{"filename": "fifo_ltxv_00001_.mp4", "subfolder": "longvideo", "type": "output"}], "animated": [True]},
    # PreviewAny and the k-Step report: ui.PreviewText
    "17": {"text": ["chunk 1: candidate 3 of 5\nchunk 2: candidate 1 of 5"]},
    "20": {"images": [{"filename": "ComfyUI_temp_abc_00001_.png", "subfolder": "", "type": "temp"}]},
    "21": {"audio": [{"filename": "a b&c.flac", "subfolder": "audio/x", "type": "output"}]},
}


def test_output_files_give_their_place_below_the_base_folder_and_view_url():
    files = output_files(HISTORY_OUTPUTS)
    assert [file.relative_path for file in files] == ["output/longvideo/fifo_ltxv_00001_.mp4", "temp/ComfyUI_temp_abc_00001_.png", "output/audio/x/a b&c.flac"]
    assert files[0].view_url("http://127.0.0.1:8188/") == ("http://127.0.0.1:8188/api/view?filename=fifo_ltxv_00001_.mp4&subfolder=longvideo&type=output")
    assert files[2].view_url("http://h:1") == "http://h:1/api/view?filename=a+b%26c.flac&subfolder=audio%2Fx&type=output"


def test_the_report_prints_texts_files_and_urls():
    workflow = {"14": {"class_type": "SaveVideo", "inputs": {}}, "17": {"class_type": "PreviewAny", "inputs": {}}}
    lines = report_outputs(HISTORY_OUTPUTS, workflow, "http://h:1")
    assert lines[:3] == ["node 17 (PreviewAny) text:", "  chunk 1: candidate 3 of 5", "  chunk 2: candidate 1 of 5"]
    assert "  output/longvideo/fifo_ltxv_00001_.mp4  from node 14 (SaveVideo)" in lines
    assert "    http://h:1/api/view?filename=fifo_ltxv_00001_.mp4&subfolder=longvideo&type=output" in lines
    assert any(line.startswith("  temp/ComfyUI_temp_abc_00001_.png  from node 20") and "deletes it on restart" in line for line in lines)


def test_downloads_stay_inside_the_folder(tmp_path):
    inside = OutputFile("14", "v.mp4", "longvideo", "output")
    assert download_path(tmp_path, inside) == (tmp_path / "longvideo" / "v.mp4").resolve()
    with pytest.raises(ValueError, match="outside"):
        download_path(tmp_path, OutputFile("14", "v.mp4", "../../etc", "output"))


@pytest.mark.parametrize(
    "text, url",
    [
        ("http://127.0.0.1:8188", "http://127.0.0.1:8188"),
        ("127.0.0.1:8188", "http://127.0.0.1:8188"),
        ("https://example.org/comfy/", "https://example.org/comfy"),
    ],
)
def test_server_urls_are_normalized_and_give_the_websocket_url(text, url):
    assert run_workflow.server_url(text) == url
    assert comfy_websocket.websocket_url(url, "abc") == url.replace("http", "ws", 1) + "/ws?clientId=abc"


@pytest.mark.parametrize("text", ["ftp://host", "http://", "http://host:notaport"])
def test_bad_server_urls_are_usage_errors(text):
    with pytest.raises(UsageError, match="--server"):
        run_workflow.server_url(text)


# ---------------------------------------------------------------------------------------------
# Progress lines
# ---------------------------------------------------------------------------------------------

WORKFLOW_FOR_EVENTS = {"11": {"class_type": "LongVideoDiagonalQueueSampler", "inputs": {}}}


@pytest.mark.parametrize(
    "event, data, line",
    [
        ("execution_start", {"prompt_id": "p"}, "started"),
        ("execution_cached", {"nodes": ["1", "2"], "prompt_id": "p"}, "cached from an earlier run, not run again: 2 nodes"),
        ("execution_cached", {"nodes": [], "prompt_id": "p"}, None),
        ("executing", {"node": "11", "display_node": "11", "prompt_id": "p"}, "running node 11 (LongVideoDiagonalQueueSampler)"),
        ("progress", {"value": 3, "max": 24, "prompt_id": "p", "node": "11"}, "node 11 (LongVideoDiagonalQueueSampler): step 3/24 (12%)"),
        ("executed", {"node": "11", "output": None, "prompt_id": "p"}, None),
        ("executed", {"node": "14", "output": {"images": []}, "prompt_id": "p"}, "output from node 14"),
        ("progress_state", {"prompt_id": "p", "nodes": {}}, None),
    ],
)
def test_websocket_events_become_progress_lines(event, data, line):
    assert describe_event(event, data, WORKFLOW_FOR_EVENTS) == line


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_updates_one_line_on_a_terminal_and_prints_lines_elsewhere():
    terminal, errors = FakeTerminal(), io.StringIO()
    display = Display(terminal, errors)
    display.progress("step 1/2")
    display.progress("step 2/2")
    display.line("done")
    display.progress("step 1/1")
    display.error("boom")
    assert terminal.getvalue() == "\r\x1b[Kstep 1/2\r\x1b[Kstep 2/2\ndone\n\r\x1b[Kstep 1/1\n"
    assert errors.getvalue() == "error: boom\n"
    log = io.StringIO()
    plain = Display(log, errors)
    plain.progress("step 1/2")
    plain.progress("step 2/2")
    assert log.getvalue() == "step 1/2\nstep 2/2\n"


# ---------------------------------------------------------------------------------------------
# The command, without a server
# ---------------------------------------------------------------------------------------------


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["websocket", "history polling"])
def progress_channel(request, monkeypatch):
    """Each run test runs with websocket-client and as if it were not installed."""
    if request.param == "history polling":
        monkeypatch.setattr(comfy_websocket, "websocket", None)
    return request.param


def test_no_server_is_exit_2_with_a_hint(capsys, progress_channel):
    url = f"http://127.0.0.1:{closed_port()}"
    assert run_workflow.main([str(ROOT / "workflows" / "api" / "fifo_ltxv.json"), "--server", url, "--seed", "3"]) == 2
    out, err = capsys.readouterr()
    assert "node 11 (LongVideoDiagonalQueueSampler) seed: 42 -> 3" in out
    assert f"no ComfyUI answers at {url}" in err and "python main.py" in err and "--server" in err


def test_usage_errors_are_exit_2(capsys):
    assert run_workflow.main([str(ROOT / "example_workflows" / "fifo_ltxv.json")]) == 2
    assert "Export (API)" in capsys.readouterr().err
    assert run_workflow.main([str(ROOT / "workflows" / "api" / "fifo_ltxv.json"), "--timeout", "0"]) == 2
    assert "--timeout must be a positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_workflow.main(["--frames", "many", "x.json"])
    assert exit_info.value.code == 2


# ---------------------------------------------------------------------------------------------
# Whole runs against a stand-in ComfyUI, with websocket-client and without it
# ---------------------------------------------------------------------------------------------

FIFO_LTXV = ROOT / "workflows" / "api" / "fifo_ltxv.json"
SAVED_VIDEO = {"14": {"images": [{"filename": "fifo_ltxv_00001_.mp4", "subfolder": "longvideo", "type": "output"}], "animated": [True]}}
# No run below takes more than a few seconds; the limit turns a hang into a failure.
RUN_LIMIT = ["--timeout", "20"]


@pytest.fixture
def fake():
    with FakeComfy() as server:
        server.outputs = SAVED_VIDEO
        yield server


@pytest.fixture
def ctrl_c_reaches_this_process():
    """The stand-in presses Ctrl-C with _thread.interrupt_main, which does nothing while SIGINT is
    ignored, as it is for a test run started in the background (nohup ... &)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def run(fake, *options):
    return run_workflow.main([str(FIFO_LTXV), "--server", fake.url, *RUN_LIMIT, *options])


def queued_prompt(fake):
    [payload] = fake.posted("/prompt")
    return payload


def test_a_run_shows_the_websocket_events_of_its_prompt_and_the_files_from_history(fake, capsys):
    fake.events = lambda prompt_id: [
        ("execution_start", {"prompt_id": prompt_id}),
        ("executing", {"node": "11", "display_node": "11", "prompt_id": prompt_id}),
        ("progress", {"value": 1, "max": 24, "prompt_id": "another prompt", "node": "11"}),
        b"\x00\x00\x00\x01preview image",
        "not an event",
        ("progress", {"value": 3, "max": 24, "prompt_id": prompt_id, "node": "11"}),
        ("execution_success", {"prompt_id": prompt_id}),
    ]
    assert run(fake) == 0
    out = capsys.readouterr().out
    payload = queued_prompt(fake)
    assert fake.websocket_paths == [f"/ws?clientId={payload['client_id']}"]
    lines = out.splitlines()
    assert lines[:4] == [
        f"queued prompt {payload['prompt_id']} on {fake.url}",
        "started",
        "running node 11 (LongVideoDiagonalQueueSampler)",
        "node 11 (LongVideoDiagonalQueueSampler): step 3/24 (12%)",
    ]
    assert lines[4].startswith("finished in ")
    assert "  output/longvideo/fifo_ltxv_00001_.mp4  from node 14 (SaveVideo)" in lines
    assert NO_PROGRESS_NOTE not in out


def test_without_websocket_client_the_command_polls_history_and_reports_the_same(fake, capsys, monkeypatch):
    monkeypatch.setattr(comfy_websocket, "websocket", None)
    fake.events = lambda prompt_id: [("execution_start", {"prompt_id": prompt_id})]
    fake.polls_until_finished = 3
    assert run(fake) == 0
    lines = capsys.readouterr().out.splitlines()
    assert fake.websocket_paths == []
    assert lines[:2] == [f"queued prompt {queued_prompt(fake)['prompt_id']} on {fake.url}", NO_PROGRESS_NOTE]
    assert "started" not in lines and lines[2].startswith("finished in ")
    assert "  output/longvideo/fifo_ltxv_00001_.mp4  from node 14 (SaveVideo)" in lines
    assert sum(path.startswith("/history/") for method, path, _ in fake.requests) == 4


def test_a_lost_websocket_falls_back_to_polling_history(fake, capsys):
    fake.events = lambda prompt_id: [("execution_start", {"prompt_id": prompt_id})]
    fake.close_websocket_after_events = True
    fake.polls_until_finished = 2
    assert run(fake) == 0
    out = capsys.readouterr().out
    assert "started\nlost the websocket (ComfyUI closed the websocket); waiting for the result through /history\n" in out
    assert "  output/longvideo/fifo_ltxv_00001_.mp4  from node 14 (SaveVideo)" in out


def test_a_prompt_that_outlasts_the_timeout_is_exit_1_with_its_id(fake, capsys, progress_channel):
    fake.polls_until_finished = None
    assert run_workflow.main([str(FIFO_LTXV), "--server", fake.url, "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert f"did not finish within 1 s; it keeps running on ComfyUI (prompt id {queued_prompt(fake)['prompt_id']})" in err


def test_an_execution_error_from_history_is_exit_1(fake, capsys, progress_channel):
    fake.events = lambda prompt_id: [("execution_error", {"prompt_id": prompt_id})]
    fake.outputs = {}
    fake.execution_messages = [
        [
            "execution_error",
            {"prompt_id": "p", "node_id": "12", "node_type": "VAEDecode", "exception_message": "out of memory", "exception_type": "RuntimeError"},
        ]
    ]
    assert run(fake) == 1
    assert "error: node 12 (VAEDecode) failed: RuntimeError: out of memory" in capsys.readouterr().err


def test_ctrl_c_interrupts_our_running_prompt_and_is_exit_130(fake, capsys, progress_channel, ctrl_c_reaches_this_process):
    fake.events = lambda prompt_id: [("executing", {"node": "11", "display_node": "11", "prompt_id": prompt_id})]
    fake.polls_until_finished = None
    fake.ctrl_c = True
    assert run(fake) == 130
    out = capsys.readouterr().out
    assert "Ctrl-C: stopping the prompt\nComfyUI interrupted it at node 11 (LongVideoDiagonalQueueSampler)\n" in out
    assert fake.posted("/interrupt") == [{"prompt_id": queued_prompt(fake)["prompt_id"]}]
    assert fake.posted("/queue") == []


def test_ctrl_c_removes_our_waiting_prompt_from_the_queue(fake, capsys, progress_channel, ctrl_c_reaches_this_process):
    fake.polls_until_finished = None
    fake.waiting_in_queue = True
    fake.ctrl_c = True
    assert run(fake) == 130
    assert "removed it from ComfyUI's queue" in capsys.readouterr().out
    assert fake.posted("/queue") == [{"delete": [queued_prompt(fake)["prompt_id"]]}]
    assert fake.posted("/interrupt") == []


def test_a_server_that_is_not_comfyui_is_exit_2(fake, capsys, progress_channel):
    fake.websocket_status = 404
    fake.prompt_status = 404
    assert run(fake) == 2
    assert f"error: {fake.url} answers, but not like ComfyUI: " in capsys.readouterr().err


@pytest.mark.parametrize("rejection", [unknown_node_rejection, unknown_node_rejection_033], ids=["0.8", "0.33"])
def test_a_refused_unknown_node_type_is_exit_1_naming_every_missing_one_from_object_info(fake, capsys, rejection):
    workflow = load_workflow(FIFO_LTXV)
    fake.object_info = {node["class_type"]: {} for node_id, node in workflow.items() if node_id not in ("10", "15")}
    fake.rejection = rejection("LongVideoLookahead", "10")
    assert run(fake) == 1
    assert capsys.readouterr().err.splitlines()[:3] == [
        "error: ComfyUI does not know these node types:",
        "  LTXVConditioning (node 15)",
        "  LongVideoLookahead (node 10)",
    ]


def test_object_info_is_asked_only_for_an_unknown_node_type(fake, capsys):
    fake.rejection = {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": {}}
    assert run(fake) == 1
    assert capsys.readouterr().err == "error: ComfyUI rejected the prompt: Prompt has no outputs\n"
    assert not any(path == "/object_info" for _, path, _ in fake.requests)


def test_download_writes_the_files_below_the_folder(fake, capsys, tmp_path, progress_channel):
    fake.events = lambda prompt_id: [("execution_success", {"prompt_id": prompt_id})]
    assert run(fake, "--download", str(tmp_path)) == 0
    target = tmp_path / "longvideo" / "fifo_ltxv_00001_.mp4"
    assert target.read_bytes() == b"file fifo_ltxv_00001_.mp4"
    assert f"downloaded {target}" in capsys.readouterr().out


def test_the_command_runs_on_a_python_without_site_packages(fake):
    """python -S leaves out site-packages: no websocket-client, no ComfyUI dependency, as with any Python."""
    assert subprocess.run([sys.executable, "-S", "-c", "import websocket"], capture_output=True).returncode != 0
    result = subprocess.run([sys.executable, "-S", str(CLI), str(FIFO_LTXV), "--server", fake.url, *RUN_LIMIT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert NO_PROGRESS_NOTE in result.stdout
    assert "  output/longvideo/fifo_ltxv_00001_.mp4  from node 14 (SaveVideo)" in result.stdout
