"""Streaming decode and write benchmark: peak memory writing 256, 2,048 and 10,000 frames at 64x64.

Run: python bench/bench_streaming_decode.py   (CPU is enough; prints a markdown table)

Each length runs in a fresh process, which reports its peak RSS. "streamed" is the path of the
Streaming Decode to Video File node: temporal tiles decoded one at a time (decode_in_tiles) and
written to an mp4 as they finish. "whole IMAGE" is the usual VAE Decode -> Create Video -> Save
Video path: every frame decoded into one float32 IMAGE, then written. The decoder is a stand-in
for a Wan-style VAE (4x time, 8x space, 4n+1 frames): a 3-D convolution on the latent and an
upsampling, so the numbers show the pipeline around the VAE, not a VAE's own working memory.
Lengths are the nearest 4n+1 at or above 256, 2,048 and 10,000 frames. The latent itself is held
whole in both paths, as ComfyUI passes a LATENT; its size is listed, and it is all that grows with
the length on the streamed path.

Run: COMFYUI_PATH=<ComfyUI 0.33+> python bench/bench_streaming_decode.py --sound

streams LTX-2 video with its sound through the Streaming Decode to Video File node itself (its
execute, in ComfyUI imported in-process, in a fresh process per length): a random audio-video LATENT
of about 250, 1,000 and 2,000 frames at 25 fps (64x64), decoded by the tiny random-weight LTX-2
video VAE and audio VAE of the host tests (tests/host/tiny_models.py) into an mp4 with an AAC track.
It checks with PyAV that the file's sound lasts as long as its video and prints each run's peak
RSS, and how far it rose above the RSS once the models were loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from samplers.chunk_stitching import decode_in_tiles  # noqa: E402

# the writer imports no ComfyUI; load its file without the `nodes` package, which registers nodes
_spec = importlib.util.spec_from_file_location("longvideo_video_file", ROOT / "nodes" / "video_file.py")
video_file = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(video_file)

TARGET_FRAMES = (256, 2048, 10_000)
TIME_COMPRESSION, SPACE_COMPRESSION, LATENT_CHANNELS, SIZE = 4, 8, 16, 64
TILE, OVERLAP = 16, 2


class StandInVideoDecoder:
    """latent [1, 16, n, 8, 8] -> frames [4 (n - 1) + 1, 64, 64, 3] in 0..1."""

    def __init__(self):
        torch.manual_seed(0)
        self.mix = torch.nn.Conv3d(LATENT_CHANNELS, 3, 3, padding=1)

    @torch.no_grad()
    def __call__(self, latent):
        rgb = torch.sigmoid(self.mix(latent))[0]  # [3, n, h, w]
        repeats = torch.tensor([1] + [TIME_COMPRESSION] * (rgb.shape[1] - 1))
        frames = rgb.repeat_interleave(repeats, dim=1).movedim(1, 0)
        return torch.nn.functional.interpolate(frames, scale_factor=SPACE_COMPRESSION, mode="nearest").movedim(1, -1)


def latent_frames(frames: int) -> int:
    return -(-(frames - 1) // TIME_COMPRESSION) + 1


def write(mode: str, frames: int, path: str) -> None:
    decoder = StandInVideoDecoder()
    latent_size = SIZE // SPACE_COMPRESSION
    latent = torch.randn(LATENT_CHANNELS, latent_frames(frames), latent_size, latent_size, generator=torch.Generator().manual_seed(0))
    with video_file.VideoFileWriter(path, fps=16.0) as writer:
        if mode == "streamed":
            for block in decode_in_tiles(decoder, latent, TILE, OVERLAP, TIME_COMPRESSION):
                writer.write(block)
        else:
            writer.write(decoder(latent[None]))


def measure(mode: str, frames: int) -> tuple[float, int, float]:
    """(peak RSS in MB, frames in the file, seconds) of one fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "bench.mp4")
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--memory-run", mode, str(frames), path], capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        with av.open(path) as container:
            written = sum(1 for _ in container.decode(video=0))
    return float(out.stdout.strip()), written, seconds


SOUND_FPS = 25.0
# latent frames of LTX-2's video (8x in time: 8 (n - 1) + 1 frames): 249, 1,001 and 2,001 frames
SOUND_LATENT_FRAMES = (32, 126, 251)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def write_with_sound(latent_frames: int, folder: str, models: Path) -> tuple[float, float]:
    """Run the node on a random LTX-2 audio-video LATENT; (RSS once loaded, peak RSS) in MB."""
    sys.path.insert(0, str(ROOT / "tests" / "host"))
    from comfy_host import InProcessComfy, build_tiny_models, find_comfyui
    from tiny_models import TINY_MODEL_FILES, ltx2_audio_vae

    comfy_dir = find_comfyui()
    build_tiny_models(models, comfy_dir)
    host = InProcessComfy(comfy_dir, Path(folder), models)
    import comfy.nested_tensor

    vae = host.node_class("CheckpointLoaderSimple")().load_checkpoint(TINY_MODEL_FILES["ltx2_ckpt"])[2]
    audio_vae = ltx2_audio_vae(host)
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(1, 128, latent_frames, 2, 2, generator=generator)
    model = audio_vae.first_stage_model
    sound = torch.randn(1, 8, model.num_of_latents_from_frames(8 * (latent_frames - 1) + 1, SOUND_FPS), model.latent_frequency_bins, generator=generator)
    node = host.node_class("LongVideoDecodeToVideoFile").PREPARE_CLASS_CLONE(None)
    loaded = rss_mb()
    with torch.inference_mode():  # as ComfyUI runs nodes
        node.execute(
            samples={"samples": comfy.nested_tensor.NestedTensor((video, sound))},
            vae=vae,
            audio_vae=audio_vae,
            fps=SOUND_FPS,
            filename_prefix="bench",
            format="mp4",
            crf=19,
            tile_frames=16,
            tile_overlap=2,
        )
    return loaded, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sound_durations(path: Path) -> tuple[int, float, float]:
    """(Video frames, seconds of video, seconds of sound) of the written file, as PyAV reads them."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for packet in container.demux(video) if packet.size)
        return frames, float(video.duration * video.time_base), float(audio.duration * audio.time_base)


def main_sound(models: Path) -> None:
    print(
        f"LTX-2 video with sound, 64x64 at {SOUND_FPS:g} fps: tiny random-weight video and audio VAEs (16 kHz, AAC in mp4), "
        f"tiles of 16 latent frames sharing 2, 1 CPU thread"
    )
    print("| frames | sound (s) | video (s) | RSS once loaded (MB) | peak RSS (MB) | peak above loaded (MB) | s |")
    print("|---|---|---|---|---|---|---|")
    peaks = []
    for latent_frames in SOUND_LATENT_FRAMES:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--sound-run", str(latent_frames), folder, str(models)], capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr[-3000:])
            seconds = time.perf_counter() - start
            loaded, peak = (float(value) for value in out.stdout.split()[-2:])
            [path] = (Path(folder) / "output").glob("bench_*.mp4")
            frames, video_seconds, sound_seconds = sound_durations(path)
        assert frames == 8 * (latent_frames - 1) + 1, frames
        # AAC codes 1,024 samples a frame
        assert abs(sound_seconds - video_seconds) <= 1024 / 16000, (sound_seconds, video_seconds)
        peaks.append(peak)
        print(f"| {frames} | {sound_seconds:.3f} | {video_seconds:.3f} | {loaded:.0f} | {peak:.0f} | {peak - loaded:.0f} | {seconds:.0f} |", flush=True)
    print(f"peak RSS, 1,001 frames over 249: {peaks[1] / peaks[0] - 1:+.1%}; 2,001 over 249: {peaks[2] / peaks[0] - 1:+.1%}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-run", nargs=3, metavar=("MODE", "FRAMES", "PATH"))
    parser.add_argument("--sound", action="store_true", help="LTX-2 video with sound through the node in ComfyUI (needs COMFYUI_PATH)")
    parser.add_argument("--sound-run", nargs=3, metavar=("LATENT_FRAMES", "FOLDER", "MODELS"))
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "longvideo_bench_tiny_models", help="where the tiny models are built once")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_run:
        mode, frames, path = args.memory_run
        write(mode, int(frames), path)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    if args.sound_run:
        latent_frames, folder, models = args.sound_run
        print(*write_with_sound(int(latent_frames), folder, Path(models)))
        return
    if args.sound:
        main_sound(args.models)
        return

    print(f"{SIZE}x{SIZE} frames, mp4 (H.264), tiles of {TILE} latent frames sharing {OVERLAP}, 1 CPU thread")
    print("| frames | streamed: peak RSS (MB) | streamed: s | whole IMAGE: peak RSS (MB) | whole IMAGE: s | float32 IMAGE (MB) | latent (MB) |")
    print("|---|---|---|---|---|---|---|")
    for target in TARGET_FRAMES:
        streamed_mb, written, streamed_s = measure("streamed", target)
        whole_mb, whole_written, whole_s = measure("whole", target)
        assert written == whole_written == TIME_COMPRESSION * (latent_frames(target) - 1) + 1
        image_mb = written * SIZE * SIZE * 3 * 4 / 2**20
        latent_mb = latent_frames(target) * LATENT_CHANNELS * (SIZE // SPACE_COMPRESSION) ** 2 * 4 / 2**20
        print(f"| {written} | {streamed_mb:.0f} | {streamed_s:.1f} | {whole_mb:.0f} | {whole_s:.1f} | {image_mb:.0f} | {latent_mb:.1f} |")


if __name__ == "__main__":
    main()
