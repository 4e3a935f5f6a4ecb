"""ComfyUI-LongVideo: long and endless videos from the video models you already run in ComfyUI."""
from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
