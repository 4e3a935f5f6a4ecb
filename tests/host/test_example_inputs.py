"""The inputs the shipped workflows load are shipped in the pack's input/ folder, load through
ComfyUI's own nodes, and have the sizes the workflows need."""

import json
import shutil

import pytest
from example_inputs import (
    CHUNK_LENGTH,
    CHUNK_OVERLAP,
    CHUNKS,
    CHUNKS_VIDEO,
    CONTEXT_CLIPS,
    CONTEXT_FRAMES,
    GUIDE_IMAGE,
    PACK_INPUTS,
    SOUND_CLIP,
    SOUND_CLIP_FPS,
    SOUND_CLIP_FRAMES,
)
from pack_access import call_node
from tiny_workflows import WORKFLOWS

LOADERS = {"LoadImage": "image", "LoadVideo": "file"}
LATENT_SIZE_NODES = ("EmptyHunyuanLatentVideo", "EmptyLTXVLatentVideo", "Wan22ImageToVideoLatent", "EmptyCosmosLatentVideo", "CosmosPredict2ImageToVideoLatent")


def workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def loaded_files() -> dict[str, set[str]]:
    """File name -> the workflows that load it from ComfyUI's input folder."""
    files = {}
    for path in WORKFLOWS.glob("*.json"):
        for node in json.loads(path.read_text()).values():
            if node["class_type"] in LOADERS:
                files.setdefault(node["inputs"][LOADERS[node["class_type"]]], set()).add(path.stem)
    return files


def test_every_input_a_workflow_loads_is_shipped():
    shipped = {path.name for path in PACK_INPUTS.iterdir()}
    assert set(loaded_files()) <= shipped
    assert shipped == {GUIDE_IMAGE[0], CHUNKS_VIDEO[0], SOUND_CLIP[0], *(name for name, _, _ in CONTEXT_CLIPS.values())}


@pytest.fixture(scope="module")
def input_folder(comfy_inprocess, tmp_path_factory):
    """ComfyUI's input folder holding the shipped inputs, for this module only: other tests write their own."""
    import folder_paths

    folder = tmp_path_factory.mktemp("shipped_inputs")
    for path in PACK_INPUTS.iterdir():
        shutil.copy(path, folder / path.name)
    previous = folder_paths.get_input_directory()
    folder_paths.set_input_directory(str(folder))
    yield comfy_inprocess
    folder_paths.set_input_directory(previous)


def video_frames(host, name):
    video = call_node(host, "LoadVideo", file=name)[0]
    images = call_node(host, "GetVideoComponents", video=video)[0]
    return images.shape[0], (images.shape[2], images.shape[1])


def test_the_guide_image_loads_through_load_image(input_folder):
    name, width, height = GUIDE_IMAGE
    image = call_node(input_folder, "LoadImage", image=name)[0]
    assert tuple(image.shape) == (1, height, width, 3)


@pytest.mark.parametrize("extension_workflow", CONTEXT_CLIPS)
def test_each_context_clip_has_the_size_of_its_workflows_video(input_folder, extension_workflow):
    name, width, height = CONTEXT_CLIPS[extension_workflow]
    size = next(
        (node["inputs"]["width"], node["inputs"]["height"]) for node in workflow(extension_workflow).values() if node["class_type"] in LATENT_SIZE_NODES
    )
    assert (width, height) == size
    assert video_frames(input_folder, name) == (CONTEXT_FRAMES, size)


def test_the_chunks_video_holds_the_chunks_the_stitching_example_expects(input_folder):
    name, width, height = CHUNKS_VIDEO
    stitcher = next(node["inputs"] for node in workflow("stitch_chunks").values() if node["class_type"] == "LongVideoChunkStitcher")
    assert (stitcher["chunk_length"], stitcher["overlap"]) == (CHUNK_LENGTH, CHUNK_OVERLAP)
    assert video_frames(input_folder, name) == (CHUNKS * CHUNK_LENGTH, (width, height))


def test_the_clip_with_sound_loads_with_its_sound_and_fits_ltx2(input_folder):
    name, width, height = SOUND_CLIP
    assert video_frames(input_folder, name) == (SOUND_CLIP_FRAMES, (width, height))
    video = call_node(input_folder, "LoadVideo", file=name)[0]
    _, audio, fps = call_node(input_folder, "GetVideoComponents", video=video)[:3]
    assert float(fps) == SOUND_CLIP_FPS
    seconds = audio["waveform"].shape[-1] / audio["sample_rate"]
    # AAC pads the track to whole frames of 1024 samples, and its encoder's delay
    assert SOUND_CLIP_FRAMES / SOUND_CLIP_FPS <= seconds < SOUND_CLIP_FRAMES / SOUND_CLIP_FPS + 2048 / audio["sample_rate"]
    assert audio["waveform"].abs().max() > 0.1
    # LTX-2 works on multiples of 32 pixels and 1 + 8 n frames
    assert width % 32 == 0 and height % 32 == 0 and (SOUND_CLIP_FRAMES - 1) % 8 == 0
