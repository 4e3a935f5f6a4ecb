"""ComfyUI-LongVideo: long and endless videos from the video models you already run in ComfyUI."""

from .nodes import comfy_entrypoint

# ComfyUI serves this folder to the editor (it reads WEB_DIRECTORY from the module it imports, this one)
WEB_DIRECTORY = "./web"

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
