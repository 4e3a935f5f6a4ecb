"""The parts of cli/run_workflow.py, one job per module.

Standard library only, apart from the optional websocket-client that comfy_websocket uses for
progress, so the package imports in any Python 3.10+ without ComfyUI. The host test harness
imports comfy_http from here too.
"""
