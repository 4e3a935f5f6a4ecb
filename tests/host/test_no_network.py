"""No code path of the pack touches the network at run time.

Every shipped workflow (tiny) runs through the real executor, with every node of the pack and the
loaders the workflows use, and the Open CLIP Loader loads an architecture whose text tower open_clip
would fetch from Hugging Face; meanwhile an audit hook refuses, and records, every attempt to
resolve a host name or open a connection.
"""

import socket
import sys
from contextlib import contextmanager

import pytest
from hostile_inputs import Runner, ending_in_a_preview
from input_media import write_workflow_inputs
from open_clip_files import HF_TEXT_TOWER_FILE, add_clip_vision_folder, write_open_clip_files
from tiny_workflows import TEST_STITCH, WORKFLOWS, tiny_length, tiny_workflow

NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "socket.sendto",
        "socket.sendmsg",
    }
)
STITCHED_CHUNK_FRAMES = 2 * TEST_STITCH["chunk_length"] - TEST_STITCH["overlap"]


class NetworkRefusal:
    """An audit hook (it cannot be removed once added) that refuses network events while armed."""

    def __init__(self):
        self.armed = False
        self.attempts: list[str] = []

    def __call__(self, event, args):
        if self.armed and event in NETWORK_EVENTS:
            self.attempts.append(f"{event}{args!r}"[:300])
            raise ConnectionRefusedError(f"network access refused by the test ({event})")

    @contextmanager
    def refusing(self):
        self.armed, self.attempts = True, []
        try:
            yield self.attempts
        finally:
            self.armed = False


_refusal = NetworkRefusal()
_installed = []


@pytest.fixture(scope="module")
def network_refused():
    if not _installed:
        sys.addaudithook(_refusal)
        _installed.append(True)
    return _refusal


def test_the_refusal_sees_a_lookup(network_refused):
    with network_refused.refusing() as attempts:
        with pytest.raises(ConnectionRefusedError):
            socket.getaddrinfo("huggingface.co", 443)
    assert attempts and attempts[0].startswith("socket.getaddrinfo")


@pytest.mark.parametrize("name", sorted(path.stem for path in WORKFLOWS.glob("*.json")))
def test_a_shipped_workflow_runs_without_the_network(comfy_inprocess, tiny_model_names, network_refused, name):
    write_workflow_inputs(comfy_inprocess.base_dir / "input", chunk_frames=STITCHED_CHUNK_FRAMES)
    runner = Runner(comfy_inprocess)
    with network_refused.refusing() as attempts:
        outcome = runner.run(ending_in_a_preview(tiny_workflow(name, tiny_model_names, length=tiny_length(name))))
    assert outcome.succeeded, outcome.describe()
    assert attempts == []


def test_an_open_clip_architecture_with_a_hugging_face_text_tower_loads_without_the_network(comfy_inprocess, network_refused, monkeypatch, tmp_path):
    write_open_clip_files(tmp_path)
    add_clip_vision_folder(monkeypatch, tmp_path)
    prompt = {
        "1": {"class_type": "LongVideoOpenCLIPLoader", "inputs": {"checkpoint": HF_TEXT_TOWER_FILE, "architecture": "xlm-roberta-base-ViT-B-32"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    with network_refused.refusing() as attempts:
        outcome = Runner(comfy_inprocess).run(prompt)
    assert outcome.succeeded, outcome.describe()
    assert attempts == []
