"""Test-only ComfyUI nodes for the LongVideo host tests (never shipped with the pack).

LongVideoTestConditioning stands in for a multi-GB text encoder: it returns a seeded random
CONDITIONING of the width the video models expect (4096 for T5-XXL / UMT5 in LTXV and Wan).
LongVideoTestTextEncode does the same from a `text` input, seeded by the text, so that a prompt
changes the video the way a real text encoder's would, without one.
LongVideoTestFailingVAE passes a VAE on that raises after a number of decodes, to test what a
run that fails half-way leaves behind.
LongVideoTestCLIPVisionLoader loads a tiny CLIP vision model whose config sits in the file's
metadata: CLIPVisionLoader only knows full-size configs. LongVideoTestEncodingTAE lets the tiny
Wan 2.2 TAEHV encode (ComfyUI only decodes with it; the real Wan 2.2 VAE cannot be made tiny), so
Wan22ImageToVideoLatent can run on tiny models.
"""

import copy
import json
import tempfile
import zlib

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


class LongVideoTestTextEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "_for_testing/longvideo"

    def encode(self, text):
        return LongVideoTestConditioning().make(4096, 8, zlib.crc32(text.encode("utf-8")), 1.0)


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


class LongVideoTestCLIPVisionLoader:
    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {"clip_name": (folder_paths.get_filename_list("clip_vision"),)}}

    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load"
    CATEGORY = "_for_testing/longvideo"

    def load(self, clip_name):
        import comfy.clip_vision
        import comfy.utils
        import folder_paths
        from safetensors import safe_open

        path = folder_paths.get_full_path_or_raise("clip_vision", clip_name)
        with safe_open(path, framework="pt") as file:
            config = json.loads(file.metadata()["config"])
        with tempfile.NamedTemporaryFile("w", suffix=".json") as config_file:
            json.dump(config, config_file)
            config_file.flush()
            clip_vision = comfy.clip_vision.ClipVisionModel(config_file.name)
        missing, _ = clip_vision.load_sd(comfy.utils.load_torch_file(path))
        assert not missing, missing
        return (clip_vision,)


class LongVideoTestEncodingTAE:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",)}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "allow_encoding"
    CATEGORY = "_for_testing/longvideo"

    def allow_encoding(self, vae):
        encoding = copy.copy(vae)
        # the other TAEHV variants take pixels as they are; only the Wan 2.2 one refuses
        encoding.process_input = lambda image: image
        encoding.first_stage_model = _FramewiseUnshuffle(vae.first_stage_model)
        return (encoding,)


class _FramewiseUnshuffle(torch.nn.Module):
    """TAEHV with the 2x2 pixel unshuffle applied to each frame.

    ComfyUI's TAEHV.encode unshuffles [B, C, T, H, W] as if T were channels; it never encodes with
    the Wan 2.2 TAEHV (the only one with patches), so nothing there notices.
    """

    def __init__(self, tae):
        super().__init__()
        self.tae = tae

    def encode(self, x, **kwargs):
        from comfy.taesd.taehv import apply_model_with_memblocks

        frames = torch.nn.functional.pixel_unshuffle(x.movedim(2, 1), self.tae.patch_size)
        padding = -frames.shape[1] % 4
        frames = torch.cat([frames, frames[:, -1:].expand(-1, padding, -1, -1, -1)], 1)
        return apply_model_with_memblocks(self.tae.encoder, frames, self.tae.parallel, False).movedim(2, 1)

    def decode(self, x, **kwargs):
        return self.tae.decode(x, **kwargs)


NODE_CLASS_MAPPINGS = {
    "LongVideoTestConditioning": LongVideoTestConditioning,
    "LongVideoTestTextEncode": LongVideoTestTextEncode,
    "LongVideoTestCLIPVisionLoader": LongVideoTestCLIPVisionLoader,
    "LongVideoTestEncodingTAE": LongVideoTestEncodingTAE,
    "LongVideoTestFailingVAE": LongVideoTestFailingVAE,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LongVideoTestConditioning": "LongVideo Test Conditioning",
    "LongVideoTestTextEncode": "LongVideo Test Text Encode",
    "LongVideoTestCLIPVisionLoader": "LongVideo Test CLIP Vision Loader",
    "LongVideoTestEncodingTAE": "LongVideo Test Encoding TAE",
    "LongVideoTestFailingVAE": "LongVideo Test Failing VAE",
}
