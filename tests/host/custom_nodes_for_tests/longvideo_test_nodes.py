"""Test-only ComfyUI nodes for the LongVideo host tests (never shipped with the pack).

LongVideoTestConditioning stands in for a multi-GB text encoder: it returns a seeded random
CONDITIONING of the width the video models expect (4096 for T5-XXL / UMT5 in LTXV and Wan).
"""
import torch


class LongVideoTestConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": ("INT", {"default": 4096, "min": 1, "max": 16384}),
                "tokens": ("INT", {"default": 8, "min": 1, "max": 4096}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
                "scale": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "_for_testing/longvideo"

    def make(self, width, tokens, seed, scale):
        generator = torch.Generator().manual_seed(seed)
        embedding = torch.randn(1, tokens, width, generator=generator) * scale
        # LTXV needs an integer attention mask; the other models ignore it.
        extras = {"pooled_output": None, "attention_mask": torch.ones(1, tokens, dtype=torch.long)}
        return ([[embedding, extras]],)


NODE_CLASS_MAPPINGS = {"LongVideoTestConditioning": LongVideoTestConditioning}
NODE_DISPLAY_NAME_MAPPINGS = {"LongVideoTestConditioning": "LongVideo Test Conditioning"}
