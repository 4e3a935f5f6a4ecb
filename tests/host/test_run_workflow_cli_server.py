"""cli/run_workflow.py run as a user runs it, in a subprocess, against a real ComfyUI server.

The workflows are the shipped ones on tiny models (tiny_workflows.py). ComfyUI's text encoders
need multi-GB models, so for --prompt the text encoders become LongVideoTestTextEncode, a test
node with the same `text` input whose conditioning is seeded by the text: the command finds it
behind the real LTXVConditioning, and the server's record and the video show the new text arrived.
"""

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import av
import numpy
import pytest
from comfy_host import PACK_ROOT
from longvideo_cli.comfy_http import ComfyHttp  # importable once comfy_host put cli/ on sys.path
from saved_videos import read_video
from tiny_workflows import node_of_type, tiny_workflow

CLI = PACK_ROOT / "cli" / "run_workflow.py"
WAN22_5B = {"wan22_5b": True}
RUN_TIMEOUT_S = 300


def run_cli(workflow_path, server, *options, timeout=RUN_TIMEOUT_S):
    return subprocess.run([sys.executable, str(CLI), str(workflow_path), "--server", server, *options], capture_output=True, text=True, timeout=timeout)


def write_workflow(tmp_path, prompt, name="workflow.json"):
    path = tmp_path / name
    path.write_text(json.dumps(prompt))
    return path


def reported_files(stdout, output_dir):
    """The output/... paths the command printed, as paths in the server's output folder."""
    return [output_dir / line.split()[0].removeprefix("output/") for line in stdout.splitlines() if line.startswith("  output/")]


def queued_prompt_id(stdout):
    return next(line.split()[2] for line in stdout.splitlines() if line.startswith("queued prompt "))


def executed_prompt(server, prompt_id):
    """The workflow as the server ran it, from its history record (number, id, prompt, ...)."""
    return ComfyHttp(server.url).finished_entry(prompt_id)["prompt"][2]


def pixels(path):
    with av.open(str(path)) as container:
        return numpy.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def fifo_prompt(names, **options):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", names, length=5, **WAN22_5B, **options)
    # a model file this server lacks, so that only --model makes the workflow valid
    prompt[node_of_type(prompt, "UNETLoader")]["inputs"]["unet_name"] = "wan2.2_ti2v_5B_fp16.safetensors"
    return prompt


def test_a_run_shows_progress_applies_frames_seed_model_and_reports_files_that_exist(comfy_server, tiny_model_names, tmp_path):
    path = write_workflow(tmp_path, fifo_prompt(tiny_model_names))
    model = f"--model=wan2.2_ti2v_5B_fp16.safetensors={tiny_model_names['wan22_5b']}"
    runs = {}
    for frames, seed in ((5, 3), (5, 4), (9, 3)):
        result = run_cli(path, comfy_server.url, "--frames", str(frames), "--seed", str(seed), model)
        assert result.returncode == 0, result.stdout + result.stderr
        runs[frames, seed] = result.stdout
    assert "node 11 (LongVideoDiagonalQueueSampler) length: 5 -> 9 latent frames" in runs[9, 3]
    stdout = runs[5, 3]
    assert "node 11 (LongVideoDiagonalQueueSampler) seed: 42 -> 3" in stdout
    assert f'node 1 (UNETLoader) unet_name: "wan2.2_ti2v_5B_fp16.safetensors" -> "{tiny_model_names["wan22_5b"]}"' in stdout
    assert "running node 11 (LongVideoDiagonalQueueSampler)" in stdout
    steps = [line for line in stdout.splitlines() if line.startswith("node 11 (LongVideoDiagonalQueueSampler): step ")]
    assert steps and steps[-1].endswith("(100%)")
    assert f"{comfy_server.url}/api/view?filename=" in stdout
    videos = {run: reported_files(out, comfy_server.output_dir) for run, out in runs.items()}
    for run, [video] in videos.items():
        assert video.is_file(), (run, video)
        prompt_id = queued_prompt_id(runs[run])
        assert executed_prompt(comfy_server, prompt_id)["11"]["inputs"]["seed"] == run[1]
    assert read_video(videos[5, 3][0])[0] == 4 * (5 - 1) + 1
    assert read_video(videos[9, 3][0])[0] == 4 * (9 - 1) + 1
    assert not numpy.array_equal(pixels(videos[5, 3][0]), pixels(videos[5, 4][0])), "--seed changed nothing"


def test_without_the_model_override_the_server_names_the_missing_file(comfy_server, tiny_model_names, tmp_path):
    result = run_cli(write_workflow(tmp_path, fifo_prompt(tiny_model_names)), comfy_server.url)
    assert result.returncode == 1
    assert "node 1 (UNETLoader) input unet_name: Value not in list (unet_name: 'wan2.2_ti2v_5B_fp16.safetensors' not in" in result.stderr


def test_prompt_reaches_the_text_encoder_behind_ltxv_conditioning(comfy_server, tiny_model_names, tmp_path):
    prompt = tiny_workflow("fifo_ltxv", tiny_model_names, length=3)
    original = json.loads((PACK_ROOT / "workflows" / "api" / "fifo_ltxv.json").read_text())
    for node_id in ("5", "6"):
        prompt[node_id] = {"class_type": "LongVideoTestTextEncode", "inputs": {"text": original[node_id]["inputs"]["text"]}}
    assert prompt["11"]["inputs"]["positive"] == ["15", 0] and prompt["15"]["class_type"] == "LTXVConditioning"
    path = write_workflow(tmp_path, prompt)
    videos = {}
    for text in ("a red kite over the sea", "a lighthouse at night"):
        result = run_cli(path, comfy_server.url, "--prompt", text, "--negative", "blurry")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f'node 5 (LongVideoTestTextEncode) text: "{original["5"]["inputs"]["text"][:60]}' in result.stdout
        ran = executed_prompt(comfy_server, queued_prompt_id(result.stdout))
        assert ran["5"]["inputs"]["text"] == text and ran["6"]["inputs"]["text"] == "blurry"
        [videos[text]] = reported_files(result.stdout, comfy_server.output_dir)
    first, second = videos.values()
    assert not numpy.array_equal(pixels(first), pixels(second)), "the prompt did not change the video"


def test_download_fetches_the_reported_files(comfy_server, tiny_model_names, tmp_path):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=4, **WAN22_5B)
    result = run_cli(write_workflow(tmp_path, prompt), comfy_server.url, "--download", str(tmp_path / "got"), "--seed", "11")
    assert result.returncode == 0, result.stdout + result.stderr
    [video] = reported_files(result.stdout, comfy_server.output_dir)
    downloaded = tmp_path / "got" / video.relative_to(comfy_server.output_dir)
    assert f"downloaded {downloaded}" in result.stdout
    assert downloaded.read_bytes() == video.read_bytes()


def test_text_outputs_are_printed(comfy_server, tmp_path):
    prompt = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "first line"}}, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = run_cli(write_workflow(tmp_path, prompt), comfy_server.url, "--set", f"1.value=report {time.time()}")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[lines.index("node 2 (PreviewAny) text:") + 1].startswith("  report ")


def test_a_missing_server_is_exit_2_with_the_hint(tiny_model_names, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = run_cli(write_workflow(tmp_path, {"1": {"class_type": "PreviewAny", "inputs": {}}}), url, timeout=60)
    assert result.returncode == 2
    assert f"no ComfyUI answers at {url}" in result.stderr and "python main.py" in result.stderr


def test_an_unknown_node_type_is_exit_1_and_named(comfy_server, tiny_model_names, tmp_path):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=4, **WAN22_5B)
    prompt["10"]["class_type"] = "SomeUninstalledPackNode"
    prompt["40"] = {"class_type": "AnotherMissingNode", "inputs": {}}
    result = run_cli(write_workflow(tmp_path, prompt), comfy_server.url)
    assert result.returncode == 1
    assert "ComfyUI does not know these node types" in result.stderr
    assert "SomeUninstalledPackNode (node 10)" in result.stderr and "AnotherMissingNode (node 40)" in result.stderr


def test_an_invalid_input_is_exit_1_naming_node_and_input(comfy_server, tiny_model_names, tmp_path):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=4, **WAN22_5B)
    result = run_cli(write_workflow(tmp_path, prompt), comfy_server.url, "--set", "11.length=0", "--set", '11.start="sideways"')
    assert result.returncode == 1
    assert "node 11 (LongVideoDiagonalQueueSampler) input length: Value 0 smaller than min of 1" in result.stderr
    assert "node 11 (LongVideoDiagonalQueueSampler) input start: Value not in list (start: 'sideways' not in" in result.stderr


def test_an_execution_error_is_exit_1_with_node_class_and_message(comfy_server, tiny_model_names, tmp_path):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=4, **WAN22_5B)
    decode = node_of_type(prompt, "VAEDecode")
    prompt["30"] = {"class_type": "LongVideoTestFailingVAE", "inputs": {"vae": prompt[decode]["inputs"]["vae"], "decodes": 0}}
    prompt[decode]["inputs"]["vae"] = ["30", 0]
    result = run_cli(write_workflow(tmp_path, prompt), comfy_server.url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"node {decode} (VAEDecode) failed: RuntimeError: test VAE failure" in result.stderr
    assert "running node 11 (LongVideoDiagonalQueueSampler)" in result.stdout


def test_an_editor_workflow_is_exit_2(comfy_server):
    result = run_cli(PACK_ROOT / "example_workflows" / "fifo_ltxv.json", comfy_server.url)
    assert result.returncode == 2
    assert "Export (API)" in result.stderr


class OutputLines:
    """A subprocess's output lines, read on a thread so that every wait for one has a timeout."""

    def __init__(self, stream):
        self.text = ""
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, marker: str, timeout: float) -> bool:
        """Whether a line with `marker` came before the output ended and within `timeout` s."""
        deadline = time.monotonic() + timeout
        while (line := self._next_line(deadline)) is not None:
            if marker in line:
                return True
        return False

    def until_end(self, timeout: float) -> str:
        """All the output, once it ended or `timeout` s passed."""
        deadline = time.monotonic() + timeout
        while self._next_line(deadline) is not None:
            pass
        return self.text

    def _next_line(self, deadline: float) -> str | None:
        try:
            line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            return None
        if line is not None:
            self.text += line
        return line


def interruptible_cli(*arguments):
    """The command as a subprocess that Ctrl-C (SIGINT) reaches. A test run started in the background
    (nohup ... &) ignores SIGINT and its children inherit that; Python then never raises KeyboardInterrupt."""
    return subprocess.Popen(
        [sys.executable, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_ctrl_c_interrupts_our_prompt_exits_130_and_the_server_keeps_working(comfy_server, tiny_model_names, tmp_path):
    long_run = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=20000, **WAN22_5B)
    process = interruptible_cli(str(CLI), str(write_workflow(tmp_path, long_run)), "--server", comfy_server.url)
    try:
        lines = OutputLines(process.stdout)
        # ComfyUI 0.33 throttles progress (ProgressBar: 100 ms and 0.5 % apart), so the first step
        # is the one progress line that surely comes early in a 20,000-frame run.
        if not lines.wait_for("LongVideoDiagonalQueueSampler): step ", timeout=120):
            pytest.fail("no progress of the sampler within 120 s:\n" + lines.text)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        output = lines.until_end(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
            comfy_server.interrupt()  # the prompt the command failed to stop would hold up the next tests
    assert process.returncode == 130, output
    assert "ComfyUI interrupted it at node 11 (LongVideoDiagonalQueueSampler)" in output
    history = comfy_server.wait(queued_prompt_id(output), timeout=60)
    assert any(event == "execution_interrupted" for event, _ in history["status"]["messages"])
    assert comfy_server.running_prompt_ids() == []
    short_run = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=3, **WAN22_5B)
    result = run_cli(write_workflow(tmp_path, short_run, "short.json"), comfy_server.url, "--seed", "5")
    assert result.returncode == 0, result.stdout + result.stderr


# python -S leaves out site-packages: the command runs as on a Python without websocket-client.
WITHOUT_SITE_PACKAGES = "-S"
NO_PROGRESS = "no progress shown: the websocket-client package is not installed"


def test_without_websocket_client_the_run_is_reported_from_history(comfy_server, tiny_model_names, tmp_path):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=4, **WAN22_5B)
    result = subprocess.run(
        [sys.executable, WITHOUT_SITE_PACKAGES, str(CLI), str(write_workflow(tmp_path, prompt)), "--server", comfy_server.url, "--seed", "12"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert NO_PROGRESS in result.stdout and ": step " not in result.stdout
    [video] = reported_files(result.stdout, comfy_server.output_dir)
    assert read_video(video)[0] == 4 * (4 - 1) + 1
    assert executed_prompt(comfy_server, queued_prompt_id(result.stdout))["11"]["inputs"]["seed"] == 12


def test_without_websocket_client_ctrl_c_interrupts_the_running_prompt(comfy_server, tiny_model_names, tmp_path):
    long_run = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=20000, **WAN22_5B)
    process = interruptible_cli(WITHOUT_SITE_PACKAGES, str(CLI), str(write_workflow(tmp_path, long_run)), "--server", comfy_server.url)
    try:
        lines = OutputLines(process.stdout)
        if not lines.wait_for(NO_PROGRESS, timeout=60):
            pytest.fail("the command did not queue the prompt within 60 s:\n" + lines.text)
        prompt_id = queued_prompt_id(lines.text)
        deadline = time.monotonic() + 60
        while prompt_id not in comfy_server.running_prompt_ids():
            assert time.monotonic() < deadline, "the prompt did not start within 60 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        output = lines.until_end(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
            comfy_server.interrupt()  # the prompt the command failed to stop would hold up the next tests
    assert process.returncode == 130, output
    # Without progress events the command cannot tell which node runs when Ctrl-C comes.
    assert "ComfyUI interrupted it at node " in output
    history = comfy_server.wait(prompt_id, timeout=60)
    assert any(event == "execution_interrupted" for event, _ in history["status"]["messages"])
    assert comfy_server.running_prompt_ids() == []
