"""Sampler overhead on a real-size architecture, through the real ComfyUI: time outside the model as a
ratio of the time inside it, for each sampler and option, next to ComfyUI's own KSampler.

Run: COMFYUI_PATH=<ComfyUI 0.33+> python bench/bench_real_comfy.py [--size 64] [--frames 8]

The model is a random-weight transformer with the real Wan 2.1 1.3B configuration (dim 1536, 30
layers, 12 heads, FFN 8960; built here, never downloaded), loaded by ComfyUI's UNETLoader as the
real file is, with ModelSamplingSD3 shift 8 and CFG 5 over 512-token prompts from a test node that
stands in for the text encoder. Each workflow runs in-process through ComfyUI's own executor. The
time inside the model is the time spent in the transformer's forward; a sampler's time is its
sampling call (the pack's sample_video, KSampler's comfy.sample.sample), so loading the model and
encoding count for neither, and the ratio shows what the sampling adds around the model. On CPU a small
video keeps a run within minutes; with a GPU, pass --size 832x480 for Wan's 480p.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

HOST_TESTS = Path(__file__).resolve().parents[1] / "tests" / "host"
sys.path.insert(0, str(HOST_TESTS))

WAN_1_3B = {
    "model_type": "t2v",
    "dim": 1536,
    "ffn_dim": 8960,
    "num_heads": 12,
    "num_layers": 30,
    "in_dim": 16,
    "out_dim": 16,
    "text_dim": 4096,
    "freq_dim": 256,
}
FILE = "wan2.1_t2v_1.3B_random_weights.safetensors"
WINDOW = 4


def build_model(models_dir: Path) -> None:
    """The random-weight Wan 2.1 1.3B in bf16, as the repackaged file stores it (once)."""
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    from safetensors.torch import save_file

    path = models_dir / "diffusion_models" / FILE
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    model = WanModel(**WAN_1_3B, operations=comfy.ops.disable_weight_init)
    tensors = {}
    for name, template in model.state_dict().items():
        norm_scale = name.endswith(".weight") and template.ndim == 1
        value = (
            torch.ones(template.shape)
            if norm_scale
            else torch.zeros(template.shape)
            if name.endswith(".bias")
            else torch.randn(template.shape, generator=generator) * 0.02
        )
        tensors[name] = value.to(torch.bfloat16)
    save_file(tensors, str(path))


def workflows(width: int, height: int, frames: int) -> dict[str, dict]:
    """name -> API prompt."""
    base = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": FILE, "weight_dtype": "default"}},
        "2": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 8.0}},
        "3": {"class_type": "LongVideoTestConditioning", "inputs": {"width": 4096, "tokens": 512, "seed": 1, "scale": 1.0}},
        "4": {"class_type": "LongVideoTestConditioning", "inputs": {"width": 4096, "tokens": 512, "seed": 2, "scale": 1.0}},
        "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": width, "height": height, "length": 4 * (WINDOW - 1) + 1, "batch_size": 1}},
    }

    def scheduler(steps):
        return {"class_type": "BasicScheduler", "inputs": {"model": ["2", 0], "scheduler": "simple", "steps": steps, "denoise": 1.0}}

    def diagonal_queue(partitions, lookahead):
        prompt = {
            **base,
            "6": scheduler(WINDOW * partitions),
            "7": {"class_type": "LongVideoLatentPartition", "inputs": {"partitions": partitions, "window_batching": "one by one"}},
            "8": {"class_type": "LongVideoLookahead", "inputs": {"enabled": lookahead, "options": ["7", 0]}},
            "10": {
                "class_type": "LongVideoDiagonalQueueSampler",
                "inputs": {
                    "model": ["2", 0],
                    "positive": ["3", 0],
                    "negative": ["4", 0],
                    "cfg": 5.0,
                    "sigmas": ["6", 0],
                    "latent": ["5", 0],
                    "start": "sample a first clip",
                    "length": frames,
                    "window": WINDOW,
                    "seed": 0,
                    "eta": 1.0,
                    "options": ["8", 0],
                },
            },
        }
        return prompt

    progressive = {
        **base,
        "6": scheduler(4),
        "10": {
            "class_type": "LongVideoProgressiveARSampler",
            "inputs": {
                "model": ["2", 0],
                "positive": ["3", 0],
                "negative": ["4", 0],
                "cfg": 5.0,
                "sigmas": ["6", 0],
                "latent": ["5", 0],
                "length": frames,
                "chunk_size": 2,
                "window_chunks": 2,
                "seed": 0,
                "eta": 0.0,
            },
        },
    }
    ksampler = {
        **base,
        "10": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["2", 0],
                "seed": 0,
                "steps": WINDOW,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["3", 0],
                "negative": ["4", 0],
                "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
    }
    saved = {"99": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "bench"}}}
    return {
        f"KSampler, {WINDOW} latent frames, {WINDOW} steps": {**ksampler, **saved},
        "Diagonal Queue DD": {**diagonal_queue(1, False), **saved},
        "Diagonal Queue DD+LP (n=2)": {**diagonal_queue(2, False), **saved},
        "Diagonal Queue DD+LP+LD (n=2)": {**diagonal_queue(2, True), **saved},
        "Progressive AR (chunks of 2, 2 noisy)": {**progressive, **saved},
    }


class Timers:
    """Seconds inside the transformer's forward (with its call count) and inside the sampling itself:
    the pack's sample_video for its samplers, comfy.sample.sample for KSampler."""

    def __init__(self):
        self.model = self.sampling = 0.0
        self.model_calls = 0

    def install(self):
        import comfy.sample
        from comfy.ldm.wan.model import WanModel
        from pack_access import pack_module

        WanModel.forward = self._timed(WanModel.forward, "model", counted=True)
        comfy.sample.sample = self._timed(comfy.sample.sample, "sampling")
        for node_module in ("nodes.diagonal_queue", "nodes.progressive_ar"):
            module = pack_module(node_module)
            module.sample_video = self._timed(module.sample_video, "sampling")

    def _timed(self, function, total: str, counted: bool = False):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(self, total, getattr(self, total) + time.perf_counter() - start)
                self.model_calls += counted

        return timed

    def reset(self):
        self.model = self.sampling = 0.0
        self.model_calls = 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="64x64", help="video WIDTHxHEIGHT in pixels (Wan latent: 1/8; tokens per latent frame: 1/16 squared)")
    parser.add_argument("--frames", type=int, default=8, help="latent frames each long-video sampler outputs")
    parser.add_argument(
        "--models", type=Path, default=Path(tempfile.gettempdir()) / "longvideo_bench_models", help="where the random-weight model is written once"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    from comfy_host import InProcessComfy, find_comfyui, prepare_comfy_imports

    comfy_dir = find_comfyui()
    if comfy_dir is None:
        sys.exit("Set COMFYUI_PATH to a ComfyUI 0.33+ checkout.")
    prepare_comfy_imports(comfy_dir)
    build_model(args.models)
    host = InProcessComfy(comfy_dir, Path(tempfile.mkdtemp(prefix="longvideo-bench-")), args.models)
    timers = Timers()
    timers.install()
    print(
        f"Wan 2.1 1.3B architecture (random weights, bf16 file), {width}x{height}, window {WINDOW} latent frames, CFG 5, "
        f"{args.frames} output latent frames per long-video sampler, {torch.get_num_threads()} CPU threads"
    )
    print("| run | model calls | seconds in the model | seconds in the sampler node outside the model | outside / inside |")
    print("|---|---|---|---|---|")
    # the executor's cache keeps the loaded model from one workflow to the next (the loader nodes are
    # the same), so the 1.3B weights are loaded once and every run times its sampling alone
    for name, prompt in workflows(width, height, args.frames).items():
        timers.reset()
        host.run_prompt(prompt)
        outside = timers.sampling - timers.model
        print(f"| {name} | {timers.model_calls} | {timers.model:.1f} | {outside:.2f} | {outside / timers.model:.2%} |", flush=True)


if __name__ == "__main__":
    main()
