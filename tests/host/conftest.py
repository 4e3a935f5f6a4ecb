"""Host tier: tests against a real ComfyUI checkout (see comfy_host.py).

Every test under tests/host gets the `host` marker and, when no ComfyUI is found, is skipped
with the single reason comfy_host.SKIP_REASON.
"""

import sys
from pathlib import Path

import pytest

# The helper modules sit next to this file; make them importable under any --import-mode.
HOST_TESTS_DIR = Path(__file__).resolve().parent
if str(HOST_TESTS_DIR) not in sys.path:
    sys.path.append(str(HOST_TESTS_DIR))

from comfy_host import (  # noqa: E402
    SKIP_REASON,
    TINY_MODEL_FILES,
    ComfyServer,
    InProcessComfy,
    build_tiny_models,
    find_comfyui,
)

COMFYUI_DIR = find_comfyui()


def pytest_configure(config):
    config.addinivalue_line("markers", "host: needs a real ComfyUI checkout (COMFYUI_PATH)")


def pytest_collection_modifyitems(config, items):
    skip_without_comfyui = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(HOST_TESTS_DIR):
            item.add_marker(pytest.mark.host)
            if COMFYUI_DIR is None:
                item.add_marker(skip_without_comfyui)


@pytest.fixture(scope="session")
def comfyui_dir() -> Path:
    if COMFYUI_DIR is None:
        pytest.skip(SKIP_REASON)
    return COMFYUI_DIR


@pytest.fixture(scope="session")
def tiny_models_dir(comfyui_dir, request, tmp_path_factory) -> Path:
    """Models folder (checkpoints/, diffusion_models/, vae/, ...) holding the tiny models.

    Kept in pytest's cache dir between sessions; rebuilt only when a recipe changes.
    """
    cache = getattr(request.config, "cache", None)
    models_dir = cache.mkdir("longvideo_tiny_models") if cache else tmp_path_factory.mktemp("tiny_models")
    build_tiny_models(models_dir, comfyui_dir)
    return models_dir


@pytest.fixture(scope="session")
def tiny_model_names() -> dict[str, str]:
    """File name of each tiny model by role: ltxv_ckpt, ltx2_ckpt, wan21, wan21_i2v, wan22_5b, cosmos_predict2, wan21_vae, taew22, taew22_fading, clip_vision, open_clip, unsupported_video."""
    return dict(TINY_MODEL_FILES)


@pytest.fixture(scope="session")
def comfy_inprocess(comfyui_dir, tiny_models_dir, tmp_path_factory) -> InProcessComfy:
    return InProcessComfy(comfyui_dir, tmp_path_factory.mktemp("comfy_inprocess"), tiny_models_dir)


@pytest.fixture(scope="session")
def comfy_server(comfyui_dir, tiny_models_dir):
    with ComfyServer(comfyui_dir, models_source=tiny_models_dir) as server:
        yield server


@pytest.fixture(autouse=True)
def idle_server_after_each_test(request):
    """Whatever a test leaves running on the shared server (it failed or timed out) is stopped before the next."""
    yield
    if "comfy_server" in request.fixturenames:
        request.getfixturevalue("comfy_server").settle()
