"""The Open CLIP Loader builds only the image tower from a local file: any open_clip architecture
loads without the network, and a file that does not fit says so in a line."""

import pytest
import torch
from hostile_inputs import Runner
from open_clip_files import HF_TEXT_TOWER_FILE, NO_CONFIG_FILE, TRUNCATED_FILE, add_clip_vision_folder, write_open_clip_files
from pack_access import call_node, pack_module

SHORT_MESSAGE = 600


@pytest.fixture
def open_clip_folder(comfy_inprocess, monkeypatch, tmp_path):
    write_open_clip_files(tmp_path)
    add_clip_vision_folder(monkeypatch, tmp_path)
    return tmp_path


def load(host, checkpoint, architecture="ViT-B-32"):
    return call_node(host, "LongVideoOpenCLIPLoader", checkpoint=checkpoint, architecture=architecture)[0]


def test_an_architecture_with_a_hugging_face_text_tower_gives_its_image_embeddings(comfy_inprocess, open_clip_folder):
    embedder = load(comfy_inprocess, HF_TEXT_TOWER_FILE)
    embeddings = embedder(torch.rand(2, 40, 48, 3, generator=torch.Generator().manual_seed(0)))
    assert embeddings.shape == (2, 16) and torch.isfinite(embeddings).all()
    assert "tiny_open_clip_xlm_roberta" in embedder.name


def test_the_image_tower_embeds_as_open_clips_whole_model_does(comfy_inprocess, tiny_model_names):
    import folder_paths
    import open_clip
    from comfy.clip_model import clip_preprocess

    name = tiny_model_names["open_clip"]
    path = folder_paths.get_full_path("clip_vision", name)
    open_clip.add_model_config(path.replace(".safetensors", ".json"))
    whole = open_clip.create_model(name.replace(".safetensors", ""), pretrained=path).eval()
    images = torch.rand(3, 40, 48, 3, generator=torch.Generator().manual_seed(1))
    pixels = clip_preprocess(images, size=whole.visual.image_size[0], mean=list(whole.visual.image_mean), std=list(whole.visual.image_std), crop=True)
    with torch.no_grad():
        torch.testing.assert_close(load(comfy_inprocess, name)(images), whole.encode_image(pixels))


@pytest.mark.parametrize(
    "checkpoint, architecture, words",
    [
        (NO_CONFIG_FILE, "ViT-B-32", "does not hold the image tower of the open_clip architecture ViT-B-32"),
        (NO_CONFIG_FILE, "not-an-architecture" * 20, "open_clip has no architecture named"),
        (NO_CONFIG_FILE, "hf-hub:timm/vit_base_patch32_clip_224.openai", "open_clip has no architecture named"),
        (TRUNCATED_FILE, "ViT-B-32", "could not be read as a weights file"),
    ],
)
def test_a_file_that_does_not_fit_is_refused_in_a_line(comfy_inprocess, open_clip_folder, checkpoint, architecture, words):
    prompt = {
        "1": {"class_type": "LongVideoOpenCLIPLoader", "inputs": {"checkpoint": checkpoint, "architecture": architecture}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    outcome = Runner(comfy_inprocess).run(prompt)
    assert outcome.refused_by_pack(), outcome.describe()
    message = outcome.execution_error["exception_message"]
    print(message)
    assert words in message and len(message) < SHORT_MESSAGE and "\n" not in message.strip()


def test_scoring_needs_no_text_tower(comfy_inprocess, open_clip_folder):
    embedder = load(comfy_inprocess, HF_TEXT_TOWER_FILE)
    assert not any(name.startswith("text") for name, _ in embedder.visual.named_parameters())
    assert isinstance(embedder, pack_module("nodes.clip_scoring").OpenCLIPEmbedder)
