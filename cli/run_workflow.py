"""Queue an API-format workflow on a running ComfyUI, follow its progress and report its outputs.

    python cli/run_workflow.py workflows/api/fifo_ltxv.json --prompt "a paper boat" --frames 64 --seed 7

Overrides (--prompt, --negative, --frames, --seed, --model, --set) change the workflow before it
is queued; each change is printed. Progress comes from ComfyUI's websocket through the
websocket-client package where it is installed, the outputs from /history. Without that package
the command shows no progress and waits through /history alone, so it runs with any Python 3.10+,
inside or outside ComfyUI's environment; ComfyUI never imports this folder. The work is done in
the longvideo_cli package next to this file.

Exit codes: 0 success, 1 the prompt was rejected, failed, was interrupted elsewhere or timed out,
2 usage or file errors or no ComfyUI at --server, 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The package next to this file, also where Python leaves the script's folder off sys.path (-P, -I, PYTHONSAFEPATH).
CLI_DIR = str(Path(__file__).resolve().parent)
if CLI_DIR not in sys.path:
    sys.path.insert(0, CLI_DIR)

from longvideo_cli.comfy_http import DEFAULT_SERVER, ComfyHttp, NotComfyUI, ServerUnreachable, normalize_server_url  # noqa: E402
from longvideo_cli.display import Display  # noqa: E402
from longvideo_cli.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE, UsageError  # noqa: E402
from longvideo_cli.overrides import Overrides, apply_overrides  # noqa: E402
from longvideo_cli.prompt_run import PromptRun  # noqa: E402
from longvideo_cli.workflow_file import load_workflow  # noqa: E402

START_HINT = "Start it with `python main.py` in the ComfyUI folder, or pass --server URL for one that runs elsewhere."

EPILOG = """\
examples:
  python cli/run_workflow.py workflows/api/fifo_ltxv.json --prompt "a paper boat on a rainy street" --frames 64 --seed 7
  python cli/run_workflow.py workflows/api/pavdm_ltxv.json --model ltx-video-2b-v0.9.5.safetensors=my_ltxv.safetensors
  python cli/run_workflow.py workflows/api/kstep_ltxv.json --set 11.chunks=3 --download ./videos

exit codes: 0 success; 1 ComfyUI rejected the prompt, it failed, it was interrupted from elsewhere
or --timeout passed; 2 usage or file errors, or no ComfyUI at --server; 130 Ctrl-C (the prompt is
interrupted on ComfyUI, or removed from its queue).

progress needs the websocket-client package (pip install websocket-client); without it the command
waits for the result and reports it all the same.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_workflow.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Queue an API-format workflow on a running ComfyUI, show its progress and where its outputs are.",
    )
    parser.add_argument("workflow", type=Path, help="API-format workflow JSON (editor: Workflow > Export (API)), e.g. workflows/api/fifo_ltxv.json")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"ComfyUI's URL (default {DEFAULT_SERVER})")
    parser.add_argument("--prompt", metavar="TEXT", help="text of the text encoder behind the sampler's positive input")
    parser.add_argument("--negative", metavar="TEXT", help="text of the text encoder behind the sampler's negative input")
    parser.add_argument(
        "--frames",
        type=int,
        metavar="N",
        help="`length` of the Diagonal Queue / Progressive AR sampler, in LATENT frames (decoded: Wan 4 x (N - 1) + 1 frames, LTX-Video 8 x (N - 1) + 1)",
    )
    parser.add_argument("--seed", type=int, metavar="N", help="value for every seed and noise_seed input")
    parser.add_argument("--model", action="append", default=[], metavar="OLD=NEW", help="use model file NEW wherever the workflow names OLD (repeatable)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="ID.INPUT=VALUE",
        help='set input INPUT of node ID; VALUE is read as JSON (64, 2.5, true, ["5", 0]) or else as text (repeatable, applied after the other options)',
    )
    parser.add_argument("--download", type=Path, metavar="DIR", help="also fetch the output files into DIR")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after SECONDS (default: wait)")
    return parser


def server_url(text: str) -> str:
    try:
        return normalize_server_url(text)
    except ValueError as error:
        raise UsageError(f"--server {error}") from None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    display = Display()
    try:
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds.")
        http = ComfyHttp(server_url(args.server))
        workflow = load_workflow(args.workflow)
        overrides = Overrides(args.prompt, args.negative, args.frames, args.seed, tuple(args.model), tuple(args.sets))
        workflow, changes = apply_overrides(workflow, overrides)
        if changes:
            display.line("changes:\n" + "\n".join(f"  {change.describe()}" for change in changes))
        return PromptRun(http, workflow, display, args.timeout, args.download).execute()
    except (UsageError, NotComfyUI) as error:
        display.error(str(error))
        return EXIT_USAGE
    except ServerUnreachable as error:
        display.error(f"{error}. {START_HINT}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        display.line("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
