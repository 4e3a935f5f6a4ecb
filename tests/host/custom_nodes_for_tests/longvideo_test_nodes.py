"""Test-only ComfyUI nodes for the LongVideo host tests (never shipped with the pack).

LongVideoTestConditioning stands in for a multi-GB text encoder: it returns a seeded random
CONDITIONING of the width the video models expect (4096 for T5-XXL / UMT5 in LTXV and Wan).
LongVideoTestFailingVAE passes a VAE on that raises after a number of decodes, to test what a
run that fails half-way leaves behind.
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


class _FailingVAE:
    def __init__(self, vae, decodes):
        self._vae, self._decodes_left = vae, decodes

    def __getattr__(self, name):
        return getattr(self._vae, name)

    def decode(self, *args, **kwargs):
        if self._decodes_left == 0:
            raise RuntimeError("test VAE failure")
        self._decodes_left -= 1
        return self._vae.decode(*args, **kwargs)


class LongVideoTestFailingVAE:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",), "decodes": ("INT", {"default": 1, "min": 0, "max": 1000})}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "wrap"
    CATEGORY = "_for_testing/longvideo"

    def wrap(self, vae, decodes):
        return (_FailingVAE(vae, decodes),)


NODE_CLASS_MAPPINGS = {"LongVideoTestConditioning": LongVideoTestConditioning, "LongVideoTestFailingVAE": LongVideoTestFailingVAE}
NODE_DISPLAY_NAME_MAPPINGS = {"LongVideoTestConditioning": "LongVideo Test Conditioning", "LongVideoTestFailingVAE": "LongVideo Test Failing VAE"}
