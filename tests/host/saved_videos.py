"""Reading back the video files that a prompt saved to ComfyUI's output folder."""

import av  # ComfyUI's own dependency, present wherever the host tier runs


def saved_file(output_dir, entry, node_id):
    """The one file that node ``node_id`` reports in a history entry's UI outputs."""
    [item] = entry["outputs"][node_id]["images"]
    assert item["type"] == "output"
    return output_dir / item["subfolder"] / item["filename"]


def read_video(path):
    """(decoded frame count, (width, height), average fps, metadata tags with lower-case keys)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        tags = {key.lower(): value for key, value in container.metadata.items()}
        return frames, (stream.width, stream.height), stream.average_rate, tags
