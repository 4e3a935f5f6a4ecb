"""Reference Anchor: a clean reference the samplers show the model in front of every window (samplers/anchoring.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from comfy_api.latest import io

from .schema import ANCHOR, CATEGORY


@dataclass(frozen=True)
class AnchorSettings:
    reference: Optional[dict] = None  # a LATENT whose first frame is the reference; None: the video's own first frame


class ReferenceAnchor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoReferenceAnchor",
            display_name="Reference Anchor",
            category=CATEGORY,
            description="Keeps a clean reference in front of every window the model sees, read-only (as ComfyUI's context windows "
            "keep the first frame with retain_first_frame), so identity and colours stay with it over minutes. It is never written "
            "back or output; every model call sees one more latent frame.",
            inputs=[
                io.Latent.Input(
                    "reference",
                    optional=True,
                    tooltip="A clean latent at the video's size, e.g. an image through VAE Encode: its first latent frame is the reference. Unconnected: the video's own first frame (the sampler's first clip, the clip it continues, or its first finished frame).",
                ),
            ],
            outputs=[ANCHOR.Output(display_name="anchor", tooltip="Connect to the anchor input of the Diagonal Queue or Progressive AR sampler.")],
        )

    @classmethod
    def execute(cls, reference=None) -> io.NodeOutput:
        return io.NodeOutput(AnchorSettings(reference))
