"""The editor's layout route counts a Few-Step Queue's frames per level and a Reference Anchor's frame in every call."""

import json
import urllib.request


def layout(server, **query) -> dict:
    url = f"{server.url}/api/longvideo/layout?" + "&".join(f"{key}={value}" for key, value in query.items())
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def test_a_few_step_queue_with_a_reference_anchor(comfy_server):
    summary = layout(
        comfy_server, method="diagonal_queue", window=20, partitions=1, lookahead="true", frames_per_level=5, reference_frames=1, steps=4, length=40
    )
    assert summary["steps_warning"] is None and summary["levels"] == 4
    assert summary["frames_per_call"] == 21 and summary["reference_frames"] == 1
    assert summary["calls_per_frame"] == 0.4
    refused = layout(comfy_server, method="diagonal_queue", window=20, frames_per_level=3)
    assert "frames_per_level must divide the 20 frames of the queue" in refused["error"]


def test_a_progressive_window_with_a_reference_anchor(comfy_server):
    summary = layout(comfy_server, method="progressive_ar", chunk_size=2, window_chunks=5, reference_frames=1, steps=10, length=40)
    assert (summary["frames_per_call"], summary["reference_frames"]) == (13, 1)
