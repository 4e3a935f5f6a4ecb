"""The editor extension (web/) in headless Chromium, against the real frontend that ComfyUI serves.

Every editor test runs on two frontends, each in the classic canvas renderer and in the Vue
"Nodes 2.0" renderer (setting Comfy.VueNodes.Enabled):
- "pinned": the comfyui-frontend-package installed with the ComfyUI under test (its requirements
  pin it);
- CURRENT_FRONTEND, served with --front-end-root: the static/ folder of an unzipped
  comfyui-frontend-package wheel of that version from $LONGVIDEO_FRONTEND_ROOT, or else
  downloaded once with pip into pytest's cache.

Needs Python playwright and a Chromium binary: $CHROMIUM_PATH, default /usr/bin/chromium (Debian's
`chromium` package); playwright's own browser download is not used. Screenshots go to pytest's
tmp dir and are copied to $LONGVIDEO_SCREENSHOTS_DIR (default: longvideo_web_screens in the
system temp dir).
"""

import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from comfy_host import PACK_DIR_NAME, PACK_ROOT, ComfyServer
from tiny_workflows import node_of_type, tiny_workflow

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("LONGVIDEO_SCREENSHOTS_DIR", Path(tempfile.gettempdir()) / "longvideo_web_screens"))
# Test machines have no internet; without these flags Chromium's background connections fail.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXTENSION_SCRIPT = f"/extensions/{PACK_DIR_NAME}/longvideo.js"
LAYOUT_WIDGET = "longvideo_layout"
FILMSTRIP_HEIGHT = 56  # web/longvideo.js FILMSTRIP: the bottom of the layout area
# web/longvideo.js: the expert band's rows under the bars (HEADER + BARS + 1, EXPERT_BAND - 2 high),
# and the experts' colours, noisiest band first
EXPERT_BAND_ROWS = slice(16 + 40 + 1, 16 + 40 + 5)
EXPERT_COLOURS = ((200, 90, 230), (60, 200, 190))

CURRENT_FRONTEND = "1.58.1"  # what users run in December 2026
FRONTENDS = ("pinned", CURRENT_FRONTEND)
RENDERERS = ("classic", "vue")
# A first start opens the template browser over the canvas; the error overlay lists the models
# the example workflows name, which the test host does not have.
FRONTEND_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.RightSidePanel.ShowErrorsTab": False}
VIEWPORT = {"width": 1400, "height": 1000}
WAIT_MS = 30_000
PAGE_LOAD_MS = 90_000
PIP_DOWNLOAD_TIMEOUT_S = 600

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
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

# Runs in the page before the frontend. Keeps every warning and error logged with the extension's
# script in its stack or in the stack of an error it logs: the frontend logs deprecated API use
# (input.link, ...) and errors thrown in event listeners from its own code, so the console
# message's location is never the extension.
EXTENSION_MESSAGES_SCRIPT = """
(() => {
  const script = %s;
  Error.stackTraceLimit = 100;
  window.longVideoExtensionMessages = [];
  for (const level of ["warn", "error"]) {
    const log = console[level];
    console[level] = function (...args) {
      const stacks = [new Error().stack, ...args.map((arg) => arg?.stack ?? "")].join("\\n");
      if (stacks.includes(script)) window.longVideoExtensionMessages.push(`${level}: ${args.map(String).join(" ")}\\n${stacks}`);
      return log.apply(this, args);
    };
  }
})();
""" % json.dumps(EXTENSION_SCRIPT)


class Editor:
    """One browser page on the frontend in one renderer, with every console problem kept."""

    def __init__(self, page, server, frontend_version: str, renderer: str):
        self.page, self.server = page, server
        self.frontend_version, self.renderer = frontend_version, renderer
        self.errors: list[str] = []
        page.on(
            "console",
            lambda message: (
                message.type == "error" and self.errors.append(f"console: {message.text} at {message.location.get('url')}:{message.location.get('lineNumber')}")
            ),
        )
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error.message}\n{error.stack}"))

    @property
    def name(self) -> str:
        return f"{self.frontend_version}_{self.renderer}"

    def extension_problems(self) -> list[str]:
        """Errors and warnings that come from the extension."""
        errors = [error for error in self.errors if EXTENSION_SCRIPT in error or "longvideo" in error.lower()]
        return errors + self.page.evaluate("() => window.longVideoExtensionMessages")

    def run(self, function: str, arg=None, timeout_ms: int = WAIT_MS):
        """The value of an async page function, within timeout_ms (Playwright's evaluate has no deadline)."""
        self.page.evaluate(
            f"""(arg) => {{
                window.longVideoTestCall = null;
                Promise.resolve().then(() => ({function})(arg)).then(
                    (value) => {{ window.longVideoTestCall = {{ value: value ?? null }}; }},
                    (error) => {{ window.longVideoTestCall = {{ error: String(error?.stack ?? error) }}; }});
            }}""",
            arg,
        )
        result = self.page.wait_for_function("() => window.longVideoTestCall", timeout=timeout_ms).json_value()
        assert "error" not in result, result["error"]
        return result["value"]

    def load_workflow(self, name: str) -> None:
        workflow = json.loads((PACK_ROOT / "example_workflows" / f"{name}.json").read_text())
        self.run("(workflow) => app.loadGraphData(workflow)", workflow)
        self.next_frames()

    def set_widget(self, node_id: int, name: str, value) -> None:
        """Change a widget as a user does: a click or an edit on the canvas (classic), in the node's form (Vue)."""
        if self.renderer == "classic":
            # what the canvas does on a click or an edit: setValue runs the widget's callback
            self.page.evaluate(
                """([id, name, value]) => {
                    const node = app.graph.getNodeById(id);
                    node.widgets.find((w) => w.name === name).setValue(value, { node, canvas: app.canvas });
                    app.canvas.setDirty(true, true);
                }""",
                [node_id, name, value],
            )
        else:
            self.show(node_id)
            widget = self.page.locator(f'[data-node-id="{node_id}"]')
            if isinstance(value, bool):
                switch = widget.locator(f'[role="switch"][aria-label="{name}"]')
                if (switch.get_attribute("aria-checked") == "true") != value:
                    switch.click()
            elif isinstance(value, str):
                widget.locator(f'[role="combobox"][aria-label="{name}"]').click()
                self.page.get_by_role("option", name=value, exact=True).click()
            else:
                field = widget.locator(f'[aria-label="{name}"] input[role="spinbutton"]')
                field.fill(str(value))
                field.press("Enter")
            self.move_mouse_away()
        self.page.wait_for_function(
            """([id, name, value]) => app.graph.getNodeById(id).widgets.find((w) => w.name === name).value === value""",
            arg=[node_id, name, value],
            timeout=WAIT_MS,
        )

    def layout(self, node_id: int, **expected_query) -> dict:
        """The layout drawn on the node, once the one for expected_query has arrived and is drawn.

        expected_query names the query values an edit just changed (None: left out of the query):
        the sampler reads values on linked nodes a moment later, so the layout for the values before
        the edit may still be there.
        """
        self.show(node_id)
        expected = {name: None if value is None else str(value) for name, value in expected_query.items()}
        try:
            self.page.wait_for_function(
                """([id, expected]) => {
                    const node = app.graph.getNodeById(id);
                    const query = new URLSearchParams(node.longVideoQuery ?? "");
                    return node.longVideoQuery && node.longVideoLayoutQuery === node.longVideoQuery
                        && Object.entries(expected).every(([name, value]) => query.get(name) === value);
                }""",
                arg=[node_id, expected],
                timeout=WAIT_MS,
            )
        except PlaywrightTimeoutError:
            pytest.fail(f"no layout for {expected} within {WAIT_MS} ms; the node's query: {self.query(node_id)}")
        self.next_frames()
        assert self.redraw_changes(node_id) == 0, "the drawing on screen is not the one for the current values"
        return self.page.evaluate("(id) => app.graph.getNodeById(id).longVideoLayout", node_id)

    def bypass(self, node_id: int) -> None:
        """Bypass a node with its context menu's "Bypass"."""
        self.show(node_id)
        if self.renderer == "vue":
            box = self.page.locator(f'[data-node-id="{node_id}"]').bounding_box()
            title = (box["x"] + box["width"] / 2, box["y"] + 10)
        else:
            title = self.page.evaluate(
                """(id) => {
                    const node = app.graph.getNodeById(id);
                    const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0] / 2, node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT / 2]);
                    const canvas = app.canvas.canvas.getBoundingClientRect();
                    return [canvas.left + x, canvas.top + y];
                }""",
                node_id,
            )
        self.page.mouse.click(*title, button="right")
        self.page.get_by_text("Bypass", exact=True).click()
        self.move_mouse_away()
        bypass_mode = 4  # LiteGraph's LGraphEventMode.BYPASS
        self.page.wait_for_function("([id, mode]) => app.graph.getNodeById(id).mode === mode", arg=[node_id, bypass_mode], timeout=WAIT_MS)

    def redraw_changes(self, node_id: int) -> int:
        """Pixels of the node's layout area that change when it is drawn anew: 0 when what is shown is current."""
        if self.renderer == "classic":
            before = self.drawing(node_id)
            self.page.evaluate("() => app.canvas.setDirty(true, true)")
            self.next_frames()
            return changed_pixels(before, self.drawing(node_id))
        return self.page.evaluate(
            """([id, widgetName]) => {
                const canvas = document.querySelector(`[data-node-id="${id}"] canvas`);
                const widget = app.graph.getNodeById(id).widgets.find((w) => w.name === widgetName);
                const pixels = () => canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
                const before = pixels();
                widget.triggerDraw();
                const after = pixels();
                if (before.length !== after.length) return before.length / 4;
                let changed = 0;
                for (let i = 0; i < before.length; i += 4) {
                    if (before[i] !== after[i] || before[i + 1] !== after[i + 1] || before[i + 2] !== after[i + 2] || before[i + 3] !== after[i + 3]) changed++;
                }
                return changed;
            }""",
            [node_id, LAYOUT_WIDGET],
        )

    def move_mouse_away(self) -> None:
        """To empty canvas at the bottom of the page: no tooltip or tab preview over what the test looks at."""
        self.page.mouse.move(VIEWPORT["width"] / 2, VIEWPORT["height"] - 10)

    def next_frames(self) -> None:
        self.run("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")

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
        self.next_frames()

    def drawing(self, node_id: int, part: str = "all") -> Image.Image:
        """Pixels of the node's layout area on screen ("all"), or of its filmstrip at the bottom ("filmstrip")."""
        box = self.page.evaluate(
            """([id, renderer, widgetName]) => {
                const node = app.graph.getNodeById(id);
                const widget = node.widgets.find((w) => w.name === widgetName);
                const height = widget.computeSize(node.size[0])[1];
                if (renderer === "vue") {
                    // the widget's own canvas, drawn from 1 px below its top
                    const shown = document.querySelector(`[data-node-id="${id}"] canvas`).getBoundingClientRect();
                    return { x: shown.left, y: shown.top + 1, width: shown.width, height };
                }
                const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] + widget.last_y]);
                const canvas = app.canvas.canvas.getBoundingClientRect();
                return { x: canvas.left + x, y: canvas.top + y, width: node.size[0], height };
            }""",
            [node_id, self.renderer, LAYOUT_WIDGET],
        )
        if part == "filmstrip":
            box = {**box, "y": box["y"] + box["height"] - FILMSTRIP_HEIGHT, "height": FILMSTRIP_HEIGHT}
        return Image.open(io.BytesIO(self.page.screenshot(clip=box))).convert("RGB")

    def screenshot(self, tmp_path: Path, name: str) -> Path:
        path = tmp_path / f"{name}_{self.name}.png"
        self.page.screenshot(path=str(path))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / path.name)
        return path


def expert_band(drawing: Image.Image) -> tuple[int, int]:
    """Pixels of the high-noise and the low-noise expert's colour in the band under the slots."""
    band = np.asarray(drawing, dtype=int)[EXPERT_BAND_ROWS]
    return tuple(int((np.abs(band - colour).max(axis=2) <= 8).sum()) for colour in EXPERT_COLOURS)


def assert_band_shows(drawing: Image.Image, expert: list[int]) -> tuple[int, int]:
    """The band shows each expert over its share of the slots (context slots have none)."""
    high, low = expert_band(drawing)
    width = drawing.size[0]
    assert (high + low) / (width * (EXPERT_BAND_ROWS.stop - EXPERT_BAND_ROWS.start)) > 0.8 * sum(e >= 0 for e in expert) / len(expert)
    assert high / (high + low) == pytest.approx(expert.count(0) / (expert.count(0) + expert.count(1)), abs=0.03)
    return high, low


def changed_pixels(before: Image.Image, after: Image.Image) -> int:
    assert before.size == after.size
    difference = np.abs(np.asarray(before, dtype=int) - np.asarray(after, dtype=int)).max(axis=2)
    return int((difference > 24).sum())


def post_setting(server, key, value) -> None:
    request = urllib.request.Request(
        f"{server.url}/api/settings/{key}", data=json.dumps(value).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).read()


def get_layout(server, **query) -> tuple[int, dict]:
    url = f"{server.url}/api/longvideo/layout?" + "&".join(f"{k}={v}" for k, v in query.items())
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def download_frontend(version: str, folder: Path) -> Path:
    """The static/ folder of comfyui-frontend-package==version, fetched with pip and unzipped into folder."""
    static = folder / "static"
    if (static / "index.html").is_file():
        return static
    with tempfile.TemporaryDirectory(dir=folder) as work:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--dest",
            work,
            f"comfyui-frontend-package=={version}",
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=PIP_DOWNLOAD_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            pytest.fail(
                f"pip could not download comfyui-frontend-package=={version} ({error}):\n{error.stderr}\n"
                f"Set LONGVIDEO_FRONTEND_ROOT to the static/ folder of an unzipped wheel of that version."
            )
        [wheel] = Path(work).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(work, [name for name in archive.namelist() if name.startswith("comfyui_frontend_package/static/")])
        # moved in whole, so an interrupted download never leaves a partial frontend behind
        os.replace(Path(work) / "comfyui_frontend_package" / "static", static)
    return static


@pytest.fixture(scope="session")
def current_frontend_root(request, tmp_path_factory) -> Path:
    if os.environ.get("LONGVIDEO_FRONTEND_ROOT"):
        return Path(os.environ["LONGVIDEO_FRONTEND_ROOT"])
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir(f"longvideo_frontend_{CURRENT_FRONTEND}") if cache else tmp_path_factory.mktemp("frontend")
    return download_frontend(CURRENT_FRONTEND, folder)


@pytest.fixture(scope="module", params=FRONTENDS, ids=lambda frontend: f"frontend-{frontend}")
def frontend_server(request, comfyui_dir, tiny_models_dir):
    """(server, frontend version it serves)."""
    if request.param == "pinned":
        # the server runs in this Python environment, with the frontend package installed here
        yield request.getfixturevalue("comfy_server"), importlib.metadata.version("comfyui-frontend-package")
        return
    root = request.getfixturevalue("current_frontend_root")
    with ComfyServer(comfyui_dir, models_source=tiny_models_dir, extra_args=("--front-end-root", str(root))) as server:
        yield server, CURRENT_FRONTEND


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=PAGE_LOAD_MS)
        yield browser
        browser.close()


@pytest.fixture(scope="module", params=RENDERERS)
def editor(request, frontend_server, browser):
    server, frontend_version = frontend_server
    renderer = request.param
    for key, value in {**FRONTEND_SETTINGS, "Comfy.VueNodes.Enabled": renderer == "vue"}.items():
        post_setting(server, key, value)
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.add_init_script(EXTENSION_MESSAGES_SCRIPT)
    editor = Editor(page, server, frontend_version, renderer)
    page.goto(server.url, timeout=PAGE_LOAD_MS)
    page.wait_for_function("() => window.app?.graph && app.extensions?.length", timeout=PAGE_LOAD_MS)
    # the frontend logs each deprecated use once per page; its own uses must not hide the extension's
    page.evaluate("() => { LiteGraph.alwaysRepeatWarnings = true; }")
    yield editor
    problems = editor.extension_problems()
    others = [error for error in editor.errors if error not in problems]
    print(f"\n{len(others)} console errors from the frontend itself (not the extension):", *others, sep="\n  ")
    context.close()


def test_extension_is_served_and_registers_without_errors(editor):
    assert editor.page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__") == editor.frontend_version
    editor.page.wait_for_function("() => app.extensions.some((e) => e.name === 'ComfyUI-LongVideo.Layout')", timeout=WAIT_MS)
    assert editor.page.evaluate("() => app.ui.settings.getSettingValue('Comfy.VueNodes.Enabled')") == (editor.renderer == "vue")
    with urllib.request.urlopen(editor.server.url + EXTENSION_SCRIPT, timeout=30) as answer:
        assert answer.status == 200
    assert editor.extension_problems() == []


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
    layout = editor.layout(11)
    assert editor.query(11) == {
        "length": "48",
        "method": "diagonal_queue",
        "window": "13",
        "start": "sample a first clip",
        "partitions": "2",
        "lookahead": "true",
        "steps": "26",
        "frames_per_level": "1",
        "reference_frames": "0",
    }
    assert (layout["levels"], layout["context_slots"], len(layout["windows"]), layout["steps_warning"]) == (26, 6, 4, None)
    first = editor.drawing(11)
    editor.screenshot(tmp_path, "queue_window13_partitions2_lookahead")

    editor.set_widget(11, "window", 8)
    layout = editor.layout(11, window=8)
    assert (layout["levels"], layout["context_slots"], len(layout["steps_left"])) == (16, 4, 20)
    assert "Set the scheduler's steps to 16" in layout["steps_warning"]
    with_warning = editor.drawing(11)
    assert changed_pixels(first, with_warning) > 500
    editor.screenshot(tmp_path, "queue_steps_warning")

    editor.set_widget(9, "partitions", 3)
    layout = editor.layout(11, partitions=3)
    assert (layout["levels"], max(layout["group"]), len(layout["windows"])) == (24, 2, 6)
    three_partitions = editor.drawing(11)
    assert changed_pixels(with_warning, three_partitions) > 200

    # values the sampler refuses are drawn as its error message
    editor.set_widget(11, "window", 1)
    assert "needs a window of at least 2" in editor.layout(11, window=1)["error"]
    editor.set_widget(11, "window", 8)
    assert editor.layout(11, window=8)["levels"] == 24

    editor.set_widget(10, "enabled", False)
    layout = editor.layout(11, lookahead="false")
    assert (layout["context_slots"], len(layout["windows"]), layout["calls_per_frame"]) == (0, 3, 3)
    without_lookahead = editor.drawing(11)
    assert changed_pixels(three_partitions, without_lookahead) > 200

    # the run's cost is only known when the sampler makes its own first clip
    assert layout["run_calls"] > 0
    editor.set_widget(11, "start", "continue the input latent")
    assert editor.layout(11, start="continue the input latent")["run_calls"] is None

    editor.set_widget(8, "steps", 24)
    layout = editor.layout(11, steps=24)
    assert layout["steps_warning"] is None and layout["steps"] == 24
    window8_partitions3 = editor.drawing(11)
    assert changed_pixels(without_lookahead, window8_partitions3) > 100
    editor.screenshot(tmp_path, "queue_window8_partitions3")

    # a bypassed option node is left out of the chain: one partition of 8 levels
    editor.bypass(9)
    layout = editor.layout(11, partitions=1)
    assert (layout["levels"], max(layout["group"])) == (8, 0)
    assert "Set the scheduler's steps to 8" in layout["steps_warning"]
    assert changed_pixels(window8_partitions3, editor.drawing(11)) > 200
    editor.screenshot(tmp_path, "queue_partition_bypassed")
    assert editor.extension_problems() == []


def test_window_drawing_follows_the_sampler_widgets(editor, tmp_path):
    # pavdm_ltxv: sampler 11 (chunk 2, window_chunks 5), LTXV Scheduler 8 (20 steps)
    editor.load_workflow("pavdm_ltxv")
    layout = editor.layout(11)
    assert editor.query(11) == {"length": "48", "method": "progressive_ar", "chunk_size": "2", "window_chunks": "5", "steps": "20", "reference_frames": "0"}
    # behind the clean chunk, chunks at 4, 8, ..., 20 of 20 steps left; 2 calls per output frame
    assert layout["steps_left"] == [0] * 2 + [4] * 2 + [8] * 2 + [12] * 2 + [16] * 2 + [20] * 2
    assert (layout["calls_per_frame"], layout["run_calls"], layout["steps_warning"]) == (2, 112, None)
    first = editor.drawing(11)
    editor.screenshot(tmp_path, "window_chunks5")

    editor.set_widget(11, "window_chunks", 3)
    layout = editor.layout(11, window_chunks=3)
    assert "must be a multiple of 3" in layout["steps_warning"]
    assert layout["levels"] == 6  # drawn for PA-VDM's own setting while the steps do not fit
    with_warning = editor.drawing(11)
    assert changed_pixels(first, with_warning) > 500
    editor.screenshot(tmp_path, "window_steps_warning")

    editor.set_widget(11, "chunk_size", 3)
    layout = editor.layout(11, chunk_size=3)
    assert len(layout["steps_left"]) == 3 * 4
    assert changed_pixels(with_warning, editor.drawing(11)) > 200

    # the scheduler is a linked node: 21 steps fit 3 chunks again
    editor.set_widget(8, "steps", 21)
    layout = editor.layout(11, steps=21)
    assert (layout["steps"], layout["steps_warning"], layout["levels"]) == (21, None, 21)
    assert editor.extension_problems() == []


def test_queue_drawing_shows_which_expert_serves_each_slot(editor, tmp_path):
    # fifo_wan22_a14b_t2v: sampler 16 (window 21), Latent Partition 15 (2), Wan 2.2 Experts 10 (boundary 0 = auto,
    # wan2.2_t2v_high_noise_14B...), BasicScheduler 14 (simple, 42 steps) on the model of ModelSamplingSD3 31 (shift 8)
    editor.load_workflow("fifo_wan22_a14b_t2v")
    layout = editor.layout(16)
    assert editor.query(16) == {
        "length": "64",
        "method": "diagonal_queue",
        "window": "21",
        "start": "sample a first clip",
        "partitions": "2",
        "lookahead": "false",
        "steps": "42",
        "boundary": "0",
        "scheduler": "simple",
        "denoise": "1",
        "shift": "8",
        "task": "text_to_video",
        "frames_per_level": "1",
        "reference_frames": "0",
    }
    assert layout["expert_schedule"] == {"boundary": 0.875, "scheduler": "simple", "shift": 8, "denoise": 1}
    # shift 8 puts the noisiest 23 of the 42 levels at or above 0.875; the sampler moves the
    # partition edges onto the boundary: 3 windows, none reading across it
    assert layout["expert"] == [1] * 19 + [0] * 23
    assert [(w["start"], w["stop"], w["write_start"], w["write_stop"]) for w in layout["windows"]] == [(0, 19, 0, 19), (19, 40, 19, 40), (21, 42, 40, 42)]
    assert (layout["calls_per_frame"], layout["expert_warning"]) == (3, None)
    auto = editor.drawing(16)
    assert_band_shows(auto, layout["expert"])
    editor.screenshot(tmp_path, "experts_queue_auto_boundary")

    editor.set_widget(10, "boundary", 0.95)
    layout = editor.layout(16, boundary=0.95)
    assert "task" not in editor.query(16)
    assert (layout["expert"].count(0), layout["expert_schedule"]["boundary"]) == (13, 0.95)
    higher_boundary = editor.drawing(16)
    assert_band_shows(higher_boundary, layout["expert"])
    assert changed_pixels(auto, higher_boundary) > 200

    # the shift of the ModelSamplingSD3 node in front of the scheduler's model
    editor.set_widget(31, "shift", 3.0)
    layout = editor.layout(16, shift=3)
    assert layout["expert"].count(0) == 6
    lower_shift = editor.drawing(16)
    assert_band_shows(lower_shift, layout["expert"])
    assert changed_pixels(higher_boundary, lower_shift) > 100

    editor.set_widget(14, "scheduler", "beta")
    layout = editor.layout(16, scheduler="beta")
    assert layout["expert"].count(0) == 9
    beta = editor.drawing(16)
    assert_band_shows(beta, layout["expert"])
    assert changed_pixels(lower_shift, beta) > 100
    editor.screenshot(tmp_path, "experts_queue_boundary_shift_scheduler")

    # steps that do not fit the queue: no band, the experts wait for the steps
    editor.set_widget(14, "steps", 40)
    layout = editor.layout(16, steps=40)
    assert layout["expert"] is None and "once the scheduler's steps fit" in layout["expert_warning"]
    assert expert_band(editor.drawing(16)) == (0, 0)
    editor.screenshot(tmp_path, "experts_queue_steps_warning")
    editor.set_widget(14, "steps", 42)
    assert editor.layout(16, steps=42)["expert"].count(0) == 9
    beta = editor.drawing(16)

    # without the ModelSamplingSD3 node the model keeps Wan's own shift, 8
    editor.bypass(31)
    layout = editor.layout(16, shift=None)
    assert (layout["expert"].count(0), layout["expert_schedule"]["shift"]) == (15, 8)
    own_shift = editor.drawing(16)
    assert_band_shows(own_shift, layout["expert"])
    assert changed_pixels(beta, own_shift) > 100

    # SIGMAS that do not come from a BasicScheduler: the editor cannot know the levels
    editor.bypass(14)
    layout = editor.layout(16, boundary=None)
    assert layout["expert"] is None and editor.page.evaluate("(id) => app.graph.getNodeById(id).longVideoLayoutExperts.unknown", 16) == (
        "the sampler's SIGMAS do not come from a BasicScheduler"
    )
    assert expert_band(editor.drawing(16)) == (0, 0)
    editor.screenshot(tmp_path, "experts_queue_not_known")
    assert editor.extension_problems() == []


def test_window_drawing_shows_which_expert_serves_each_slot(editor, tmp_path):
    # pavdm_wan22_a14b_extend: sampler 16 (chunks of 2, 9 chunks), Wan 2.2 Experts 10 (boundary 0 = auto),
    # BasicScheduler 14 (simple, 18 steps) on the model of ModelSamplingSD3 31 (shift 8)
    editor.load_workflow("pavdm_wan22_a14b_extend")
    layout = editor.layout(16)
    assert (editor.query(16)["boundary"], editor.query(16)["task"], editor.query(16)["shift"]) == ("0", "text_to_video", "8")
    # behind the clean chunk, the chunks at 2, 4, 6, ... 18 steps left: the 5 noisiest (10 or more steps left,
    # sigma 0.909 and up with shift 8) are the high-noise expert's
    assert layout["expert"] == [-1] * 2 + [1] * 8 + [0] * 10
    # every window step holds both bands: two calls per step
    assert layout["calls_per_frame"] == 2
    auto = editor.drawing(16)
    assert_band_shows(auto, layout["expert"])
    editor.screenshot(tmp_path, "experts_window_auto_boundary")

    editor.set_widget(10, "boundary", 0.95)
    layout = editor.layout(16, boundary=0.95)
    assert layout["expert"] == [-1] * 2 + [1] * 12 + [0] * 6
    higher_boundary = editor.drawing(16)
    assert_band_shows(higher_boundary, layout["expert"])
    assert changed_pixels(auto, higher_boundary) > 100

    editor.set_widget(31, "shift", 3.0)
    layout = editor.layout(16, shift=3)
    assert layout["expert"] == [-1] * 2 + [1] * 14 + [0] * 4
    lower_shift = editor.drawing(16)
    assert_band_shows(lower_shift, layout["expert"])
    assert changed_pixels(higher_boundary, lower_shift) > 100
    editor.screenshot(tmp_path, "experts_window_boundary_shift")
    assert editor.extension_problems() == []


@pytest.mark.parametrize("workflow", ["fifo_ltxv", "pavdm_ltxv"])
def test_filmstrip_shows_the_frames_that_leave_the_sampler(editor, tiny_model_names, tmp_path, workflow):
    # The tiny API twin keeps the editor workflow's node ids, so its previews land on the node on screen.
    prompt = tiny_workflow(workflow, tiny_model_names, length=6)
    sampler = node_of_type(prompt, "LongVideoDiagonalQueueSampler" if workflow.startswith("fifo") else "LongVideoProgressiveARSampler")
    # the queue sends one preview per output frame; the window one per finished chunk of 2 frames
    expected = 6 if workflow.startswith("fifo") else 3
    editor.load_workflow(workflow)
    editor.layout(int(sampler))
    empty = editor.drawing(int(sampler), "filmstrip")

    first_run = run_and_wait_for_filmstrip(editor, prompt, int(sampler), expected, earlier_frames=[])
    editor.layout(int(sampler))
    first_filmstrip = editor.drawing(int(sampler), "filmstrip")
    assert changed_pixels(empty, first_filmstrip) > 100
    editor.screenshot(tmp_path, f"filmstrip_{workflow}")

    # a new run (another seed, so ComfyUI does not answer from its cache) starts a new filmstrip
    prompt[sampler]["inputs"]["seed"] += 1
    run_and_wait_for_filmstrip(editor, prompt, int(sampler), expected, earlier_frames=first_run)
    editor.layout(int(sampler))
    assert changed_pixels(first_filmstrip, editor.drawing(int(sampler), "filmstrip")) > 100
    assert editor.extension_problems() == []


def run_and_wait_for_filmstrip(editor, prompt: dict, sampler: int, expected: int, earlier_frames: list[str]) -> list[str]:
    """Queues the prompt from the page and waits for the sampler's filmstrip to hold its `expected` frames, none
    of them from earlier_frames; returns the frames' URLs."""
    answer = editor.run(
        """(prompt) => window.comfyAPI.api.api.queuePrompt(0, { output: prompt, workflow: app.graph.serialize() }, { previewMethod: "latent2rgb" })""",
        prompt,
    )
    entry = editor.server.wait(answer["prompt_id"], timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    filmstrip = """([id]) => {
        const node = app.graph.getNodeById(id);
        return { count: node.longVideoPreviewCount, frames: (node.longVideoPreviews ?? []).map((f) => f.image.src),
                 loaded: (node.longVideoPreviews ?? []).every((f) => f.image.complete && f.image.naturalWidth > 0) };
    }"""
    try:
        editor.page.wait_for_function(
            f"""([id, expected, earlier]) => {{
                const {{ count, frames, loaded }} = ({filmstrip})([id]);
                return count === expected && loaded && frames.every((frame) => !earlier.includes(frame));
            }}""",
            arg=[sampler, expected, earlier_frames],
            timeout=WAIT_MS,
        )
    except PlaywrightTimeoutError:
        pytest.fail(f"the filmstrip did not get the run's {expected} frames: {editor.page.evaluate(filmstrip, [sampler])}")
    return editor.page.evaluate(filmstrip, [sampler])["frames"]


EXAMPLES = sorted(p.stem for p in (PACK_ROOT / "example_workflows").glob("*.json"))


def declared_inputs(schema: dict, values: dict, prefix: str = "") -> set[str]:
    """Names of the inputs a node declares for these input values (its /object_info "input").

    A dynamic combo (COMFY_DYNAMICCOMBO_V3) declares, besides itself, the inputs of the option its
    value selects, named "<combo>.<input>" (nested combos add more levels).
    """
    names = set()
    for kind in ("required", "optional"):
        for name, (input_type, *options) in schema.get(kind, {}).items():
            full_name = prefix + name
            names.add(full_name)
            if input_type == "COMFY_DYNAMICCOMBO_V3" and full_name in values:
                for option in options[0]["options"]:
                    if option["key"] == values[full_name]:
                        names |= declared_inputs(option["inputs"], values, f"{full_name}.")
    return names


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_opens_in_the_editor_and_queues_its_api_twin(editor, name):
    """The editor's own conversion (graphToPrompt) of the opened example is the shipped API twin.

    Inputs the server does not declare are left out: the frontend adds display-only widgets (Preview
    Any's preview text) to what it queues, and the server ignores them.
    """
    editor.load_workflow(name)
    opened = editor.run(
        """async () => {
            const missing = app.graph.nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
            const { output } = await app.graphToPrompt();
            return { missing, output };
        }"""
    )
    assert opened["missing"] == []
    api = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    object_info = editor.server.object_info()

    def declared(node):
        names = declared_inputs(object_info[node["class_type"]]["input"], node["inputs"])
        return {"class_type": node["class_type"], "inputs": {k: v for k, v in node["inputs"].items() if k in names}}

    assert {i: declared(n) for i, n in opened["output"].items()} == {i: declared(n) for i, n in api.items()}
    assert all(declared(n) == {"class_type": n["class_type"], "inputs": n["inputs"]} for n in api.values())
    assert editor.extension_problems() == []
