"""The editor extension (web/) in headless Chromium, against the real frontend that ComfyUI serves.

Needs Python playwright and a Chromium binary: $CHROMIUM_PATH, default /usr/bin/chromium (Debian's
`chromium` package); playwright's own browser download is not used. Screenshots go to pytest's
tmp dir and are copied to $LONGVIDEO_SCREENSHOTS_DIR (default: longvideo_web_screens in the
system temp dir).
"""
import io
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from comfy_host import PACK_DIR_NAME, PACK_ROOT
from tiny_workflows import node_of_type, tiny_workflow

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("LONGVIDEO_SCREENSHOTS_DIR", Path(tempfile.gettempdir()) / "longvideo_web_screens"))
# Test machines have no internet; without these flags Chromium's background connections fail.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
EXTENSION_SCRIPT = f"/extensions/{PACK_DIR_NAME}/longvideo.js"
# A first start opens the template browser over the canvas.
FRONTEND_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
WAIT_MS = 30_000

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

if sync_playwright is None or not CHROMIUM.is_file():
    pytest.skip(
        f"the browser test needs Python playwright (pip install playwright) and Chromium at {CHROMIUM} "
        "(set CHROMIUM_PATH; on Debian: apt-get install chromium); playwright's own browser download is not used",
        allow_module_level=True,
    )

from PIL import Image  # noqa: E402  (ComfyUI's requirement; only needed past the skip)


class Editor:
    """One browser page on the frontend, with every console error and uncaught exception kept."""

    def __init__(self, page, server):
        self.page, self.server = page, server
        self.errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"console: {message.text} at {message.location.get('url')}:{message.location.get('lineNumber')}"))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error.message}\n{error.stack}"))

    def extension_errors(self) -> list[str]:
        return [error for error in self.errors if EXTENSION_SCRIPT in error or "longvideo" in error.lower()]

    def load_workflow(self, name: str) -> None:
        workflow = json.loads((PACK_ROOT / "example_workflows" / f"{name}.json").read_text())
        self.page.evaluate("async (workflow) => { await app.loadGraphData(workflow); }", workflow)

    def set_widget(self, node_id: int, name: str, value) -> None:
        """Change a widget the way a click or an edit in the editor does (setValue runs its callback)."""
        self.page.evaluate(
            """([id, name, value]) => {
                const node = app.graph.getNodeById(id);
                node.widgets.find((w) => w.name === name).setValue(value, { node, canvas: app.canvas });
                app.canvas.setDirty(true, true);
            }""",
            [node_id, name, value],
        )

    def layout(self, node_id: int) -> dict:
        """The layout drawn on the node, once the one for the current widget values has arrived."""
        # the node reads its values when it is drawn: let a frame pass after any change
        self.next_frames()
        self.page.wait_for_function(
            """(id) => {
                const node = app.graph.getNodeById(id);
                return node.longVideoQuery && node.longVideoLayoutQuery === node.longVideoQuery;
            }""",
            arg=node_id, timeout=WAIT_MS,
        )
        self.next_frames()  # and one that draws what arrived
        return self.page.evaluate("(id) => app.graph.getNodeById(id).longVideoLayout", node_id)

    def next_frames(self) -> None:
        self.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")

    def query(self, node_id: int) -> dict:
        return dict(urllib.parse.parse_qsl(self.page.evaluate("(id) => app.graph.getNodeById(id).longVideoQuery", node_id)))

    def show(self, node_id: int) -> None:
        self.page.evaluate(
            """(id) => {
                const node = app.graph.getNodeById(id);
                app.canvas.ds.scale = 1;
                app.canvas.centerOnNode(node);
                app.canvas.setDirty(true, true);
            }""",
            node_id,
        )

    def drawing(self, node_id: int, part: str = "all") -> Image.Image:
        """Pixels of the node's layout area ("all"), or of its filmstrip at the bottom ("filmstrip")."""
        box = self.page.evaluate(
            """([id, part]) => {
                const node = app.graph.getNodeById(id);
                const widget = node.widgets.find((w) => w.name === "longvideo_layout");
                const height = widget.computeSize(node.size[0])[1];
                const top = part === "filmstrip" ? widget.last_y + height - 56 : widget.last_y;
                const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] + top]);
                const canvas = app.canvas.canvas.getBoundingClientRect();
                return { x: canvas.left + x, y: canvas.top + y, width: node.size[0], height: part === "filmstrip" ? 56 : height };
            }""",
            [node_id, part],
        )
        return Image.open(io.BytesIO(self.page.screenshot(clip=box))).convert("RGB")

    def screenshot(self, tmp_path: Path, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        self.page.screenshot(path=str(path))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / path.name)
        return path


def changed_pixels(before: Image.Image, after: Image.Image) -> int:
    assert before.size == after.size
    difference = np.abs(np.asarray(before, dtype=int) - np.asarray(after, dtype=int)).max(axis=2)
    return int((difference > 24).sum())


def post_setting(server, key, value) -> None:
    request = urllib.request.Request(
        f"{server.url}/api/settings/{key}", data=json.dumps(value).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def get_layout(server, **query) -> tuple[int, dict]:
    url = f"{server.url}/api/longvideo/layout?" + "&".join(f"{k}={v}" for k, v in query.items())
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def editor(comfy_server):
    for key, value in FRONTEND_SETTINGS.items():
        post_setting(comfy_server, key, value)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        editor = Editor(page, comfy_server)
        page.goto(comfy_server.url)
        page.wait_for_function("() => window.app?.graph && app.extensions?.length", timeout=60_000)
        yield editor
        others = [error for error in editor.errors if error not in editor.extension_errors()]
        print(f"\n{len(others)} console errors from the frontend itself (not the extension):", *others, sep="\n  ")
        browser.close()


def test_extension_is_served_and_registers_without_errors(editor):
    editor.page.wait_for_function(
        "() => app.extensions.some((e) => e.name === 'ComfyUI-LongVideo.Layout')", timeout=WAIT_MS)
    with urllib.request.urlopen(editor.server.url + EXTENSION_SCRIPT, timeout=30) as answer:
        assert answer.status == 200
    assert editor.extension_errors() == []


def test_layout_route_answers_with_the_samplers_layout_or_its_error(comfy_server):
    status, layout = get_layout(comfy_server, method="diagonal_queue", window=4, partitions=2, lookahead="true", steps=8)
    assert status == 200
    assert layout["steps_left"] == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]  # specs §1.9
    assert layout["calls_per_frame"] == 4 and layout["steps_warning"] is None
    status, layout = get_layout(comfy_server, method="progressive_ar", chunk_size=2, window_chunks=2, steps=4, length=10)
    assert (status, layout["steps_left"], layout["run_calls"]) == (200, [0, 0, 2, 2, 4, 4], 12)  # specs §2.6
    # values the sampler refuses are an answer the editor draws; a malformed query is refused
    status, answer = get_layout(comfy_server, method="diagonal_queue", window=1, lookahead="true")
    assert status == 200 and "needs a window of at least 2" in answer["error"]
    status, answer = get_layout(comfy_server, method="progressive_ar", chunk_size=2)
    assert status == 400 and "window_chunks" in answer["error"]
    status, answer = get_layout(comfy_server, method="progressive_ar", chunk_size="two", window_chunks=2)
    assert status == 400 and "integers" in answer["error"]


def test_queue_drawing_follows_the_sampler_and_option_widgets(editor, tmp_path):
    # fifo_ltxv: sampler 11 (window 13), Latent Partition 9 (2), Lookahead 10 (on), LTXV Scheduler 8 (26 steps)
    editor.load_workflow("fifo_ltxv")
    editor.show(11)
    layout = editor.layout(11)
    assert editor.query(11) == {
        "length": "48", "method": "diagonal_queue", "window": "13", "start": "sample a first clip", "partitions": "2", "lookahead": "true", "steps": "26"}
    assert (layout["levels"], layout["context_slots"], len(layout["windows"]), layout["steps_warning"]) == (26, 6, 4, None)
    first = editor.drawing(11)
    editor.screenshot(tmp_path, "queue_window13_partitions2_lookahead")

    editor.set_widget(11, "window", 8)
    layout = editor.layout(11)
    assert (layout["levels"], layout["context_slots"], len(layout["steps_left"])) == (16, 4, 20)
    assert "Set the scheduler's steps to 16" in layout["steps_warning"]
    with_warning = editor.drawing(11)
    assert changed_pixels(first, with_warning) > 500
    editor.screenshot(tmp_path, "queue_steps_warning")

    editor.set_widget(9, "partitions", 3)
    layout = editor.layout(11)
    assert (layout["levels"], max(layout["group"]), len(layout["windows"])) == (24, 2, 6)
    three_partitions = editor.drawing(11)
    assert changed_pixels(with_warning, three_partitions) > 200

    # values the sampler refuses are drawn as its error message
    editor.set_widget(11, "window", 1)
    assert "needs a window of at least 2" in editor.layout(11)["error"]
    editor.set_widget(11, "window", 8)
    assert editor.layout(11)["levels"] == 24

    editor.set_widget(10, "enabled", False)
    layout = editor.layout(11)
    assert (layout["context_slots"], len(layout["windows"]), layout["calls_per_frame"]) == (0, 3, 3)
    without_lookahead = editor.drawing(11)
    assert changed_pixels(three_partitions, without_lookahead) > 200

    # the run's cost is only known when the sampler makes its own first clip
    assert layout["run_calls"] > 0
    editor.set_widget(11, "start", "continue the input latent")
    assert editor.layout(11)["run_calls"] is None

    editor.set_widget(8, "steps", 24)
    layout = editor.layout(11)
    assert layout["steps_warning"] is None and layout["steps"] == 24
    assert changed_pixels(without_lookahead, editor.drawing(11)) > 100
    editor.screenshot(tmp_path, "queue_window8_partitions3")
    assert editor.extension_errors() == []


def test_window_drawing_follows_the_sampler_widgets(editor, tmp_path):
    # pavdm_ltxv: sampler 11 (chunk 3, window_chunks 3), LTXV Scheduler 8 (18 steps)
    editor.load_workflow("pavdm_ltxv")
    editor.show(11)
    layout = editor.layout(11)
    assert editor.query(11) == {"length": "48", "method": "progressive_ar", "chunk_size": "3", "window_chunks": "3", "steps": "18"}
    # behind the clean chunk, chunks at 6, 12 and 18 of 18 steps left; 2 calls per output frame
    assert layout["steps_left"] == [0] * 3 + [6] * 3 + [12] * 3 + [18] * 3
    assert (layout["calls_per_frame"], layout["run_calls"], layout["steps_warning"]) == (2, 108, None)
    first = editor.drawing(11)
    editor.screenshot(tmp_path, "window_chunks3")

    editor.set_widget(11, "window_chunks", 4)
    layout = editor.layout(11)
    assert "must be a multiple of 4" in layout["steps_warning"]
    assert layout["levels"] == 12  # drawn for PA-VDM's own setting while the steps do not fit
    with_warning = editor.drawing(11)
    assert changed_pixels(first, with_warning) > 500
    editor.screenshot(tmp_path, "window_steps_warning")

    editor.set_widget(11, "chunk_size", 2)
    layout = editor.layout(11)
    assert len(layout["steps_left"]) == 2 * 5
    assert changed_pixels(with_warning, editor.drawing(11)) > 200
    assert editor.extension_errors() == []


@pytest.mark.parametrize("workflow", ["fifo_ltxv", "pavdm_ltxv"])
def test_filmstrip_shows_the_frames_that_leave_the_sampler(editor, comfy_server, tiny_model_names, tmp_path, workflow):
    # The tiny API twin keeps the editor workflow's node ids, so its previews land on the node on screen.
    prompt = tiny_workflow(workflow, tiny_model_names, length=6)
    sampler = int(node_of_type(prompt, "LongVideoDiagonalQueueSampler" if workflow.startswith("fifo") else "LongVideoProgressiveARSampler"))
    editor.load_workflow(workflow)
    editor.show(sampler)
    editor.layout(sampler)
    empty = editor.drawing(sampler, "filmstrip")
    answer = editor.page.evaluate(
        """async (prompt) => await window.comfyAPI.api.api.queuePrompt(0, { output: prompt, workflow: app.graph.serialize() }, { previewMethod: "latent2rgb" })""",
        prompt,
    )
    entry = comfy_server.wait(answer["prompt_id"], timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    # the queue sends one preview per output frame; the window one per finished chunk of 2 frames
    expected = 6 if workflow.startswith("fifo") else 3
    editor.page.wait_for_function(
        """([id, expected]) => {
            const node = app.graph.getNodeById(id);
            return node.longVideoPreviewCount === expected && node.longVideoPreviews.every((f) => f.image.complete && f.image.naturalWidth > 0);
        }""",
        arg=[sampler, expected], timeout=WAIT_MS,
    )
    editor.show(sampler)
    editor.layout(sampler)
    assert changed_pixels(empty, editor.drawing(sampler, "filmstrip")) > 100
    editor.screenshot(tmp_path, f"filmstrip_{workflow}")
    assert editor.extension_errors() == []


EXAMPLES = sorted(p.stem for p in (PACK_ROOT / "example_workflows").glob("*.json"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_opens_in_the_editor_and_queues_its_api_twin(editor, name):
    """The editor's own conversion (graphToPrompt) of the opened example is the shipped API twin.

    Inputs the server does not declare are left out: the frontend adds display-only widgets (Preview
    Any's preview text) to what it queues, and the server ignores them.
    """
    editor.load_workflow(name)
    opened = editor.page.evaluate(
        """async () => {
            const missing = app.graph.nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
            const { output } = await app.graphToPrompt();
            return { missing, output };
        }""")
    assert opened["missing"] == []
    api = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    object_info = editor.server.object_info()

    def declared(node):
        inputs = object_info[node["class_type"]]["input"]
        names = {**inputs.get("required", {}), **inputs.get("optional", {})}
        return {"class_type": node["class_type"], "inputs": {k: v for k, v in node["inputs"].items() if k in names}}

    assert {i: declared(n) for i, n in opened["output"].items()} == {i: declared(n) for i, n in api.items()}
    assert all(declared(n) == {"class_type": n["class_type"], "inputs": n["inputs"]} for n in api.values())
    assert editor.extension_errors() == []
