"""ComfyUI-LongVideo: long and endless videos from the video models you already run in ComfyUI."""
from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
