"""ComfyUI glue: the pack's nodes, registered through the V3 extension API."""

from comfy_api.latest import ComfyExtension

from .checkpoints import Checkpoints
from .chunk_stitcher import ChunkStitcher
from .clip_scoring import OpenCLIPLoader
from .diagonal_queue import DiagonalQueueSampler, FewStepQueue, LatentPartition, Lookahead
from .experts import WanExperts
from .layout_route import register_layout_route
from .noise_search import KStepNoiseSearch
from .progressive_ar import ProgressiveARSampler
from .prompt_schedule import PromptFrameRange
from .reference_anchor import ReferenceAnchor
from .streaming_decode import DecodeToVideoFile

# A literal mapping so that ComfyUI-Manager's and the Registry's source scanners list the node IDs.
# It lives here, not in the package root: a root that defines NODE_CLASS_MAPPINGS is loaded through
# ComfyUI's legacy path and its comfy_entrypoint is ignored.
NODE_CLASS_MAPPINGS = {
    "LongVideoDiagonalQueueSampler": DiagonalQueueSampler,
    "LongVideoLatentPartition": LatentPartition,
    "LongVideoLookahead": Lookahead,
    "LongVideoPromptFrameRange": PromptFrameRange,
    "LongVideoProgressiveARSampler": ProgressiveARSampler,
    "LongVideoChunkStitcher": ChunkStitcher,
    "LongVideoDecodeToVideoFile": DecodeToVideoFile,
    "LongVideoKStepNoiseSearch": KStepNoiseSearch,
    "LongVideoOpenCLIPLoader": OpenCLIPLoader,
    "LongVideoWanExperts": WanExperts,
    "LongVideoFewStepQueue": FewStepQueue,
    "LongVideoReferenceAnchor": ReferenceAnchor,
    "LongVideoCheckpoints": Checkpoints,
}


class LongVideoExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODE_CLASS_MAPPINGS.values())


async def comfy_entrypoint() -> LongVideoExtension:
    # ComfyUI calls this once, before the server adds its routes
    register_layout_route()
    return LongVideoExtension()
