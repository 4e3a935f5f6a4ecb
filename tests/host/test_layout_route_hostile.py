"""GET /api/longvideo/layout against hostile queries on a real ComfyUI server.

Anyone who can reach a ComfyUI server can call the route, so no query may make it work long,
grow the process or hold up other requests. Bounds here are generous (the CI machine's CPUs are
shared) but far below what an unbounded route takes: before, one 4,000-digit `window` grew the
server to 19 GB, and widget maxima held the event loop for seconds per request.
"""

import json
import statistics
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from hostile_inputs import http_get as get

ROUTE = "/api/longvideo/layout"
ANSWER_WITHIN_S = 3.0
MAX_ANSWER_BYTES = 1_000_000
WIDGET_MAXIMA = {"method": "diagonal_queue", "window": "512", "partitions": "64", "lookahead": "true", "length": "100000", "steps": "10000"}
# Wan 2.2 Experts: the route computes a schedule of `steps` levels with ComfyUI's BasicScheduler
EXPERTS = {"method": "diagonal_queue", "window": "21", "partitions": "2", "steps": "42", "boundary": "0.875", "scheduler": "simple", "shift": "8"}
# the longest schedule the queue's widgets fit (500 x 20 levels), with the slowest scheduler
EXPERTS_MAXIMA = {**WIDGET_MAXIMA, "window": "500", "partitions": "20", "boundary": "0.5", "scheduler": "sgm_uniform", "shift": "8", "denoise": "1"}

# (query, expected status, what the answer must say)
HOSTILE_QUERIES = [
    ({"method": "diagonal_queue", "window": "9" * 4000}, 400, "integers of at most 9 digits"),
    ({"method": "diagonal_queue", "window": "4", "length": "9" * 4000}, 400, "integers of at most 9 digits"),
    ({"method": "diagonal_queue", "window": "-5", "partitions": "-3", "length": "-100"}, 200, "levels"),
    ({"method": "diagonal_queue", "window": "abc"}, 400, "must be integers"),
    ({"method": "diagonal_queue", "window": "1e9"}, 400, "must be integers"),
    ({"method": "diagonal_queue", "window": "1.5"}, 400, "must be integers"),
    ({"method": "diagonal_queue", "window": "\u0661\u0662"}, 400, "must be integers"),  # Arabic-Indic digits, which int() accepts
    ({"method": "diagonal_queue", "window": "4\x00"}, 400, "must be integers"),
    ({"method": "diagonal_queue"}, 400, "Missing query parameter 'window'"),
    ({"window": "4"}, 400, "Unknown method None"),
    ({"method": "x" * 6000, "window": "4"}, 400, "Unknown method"),
    ({"method": "diagonal_queue", "window": "4", "steps": "x" * 6000}, 400, "must be integers"),
    ({"method": "diagonal_queue", "window": "1", "lookahead": "true"}, 200, "Lookahead splits each window"),
    (WIDGET_MAXIMA, 200, "levels"),
    ({**WIDGET_MAXIMA, "window": "999999999", "partitions": "999999999", "length": "999999999", "steps": "999999999"}, 200, "levels"),
    ({"method": "progressive_ar", "chunk_size": "128", "window_chunks": "64", "steps": "20000000", "length": "100000"}, 200, "levels"),
    ({"method": "progressive_ar", "chunk_size": "128", "window_chunks": "64", "steps": "9984", "length": "100000"}, 200, "levels"),
    ({"method": "progressive_ar", "chunk_size": "999999999", "window_chunks": "999999999", "steps": "-999999999"}, 200, "levels"),
    ({**EXPERTS, "boundary": "9" * 4000}, 400, "must be a decimal number"),
    ({**EXPERTS, "shift": "1." + "5" * 4000}, 400, "must be a decimal number"),
    ({**EXPERTS, "boundary": "1e-3"}, 400, "must be a decimal number"),
    ({**EXPERTS, "boundary": "nan"}, 400, "must be a decimal number"),
    ({**EXPERTS, "shift": "inf"}, 400, "must be a decimal number"),
    ({**EXPERTS, "shift": "0x10"}, 400, "must be a decimal number"),
    ({**EXPERTS, "denoise": "\u0661.5"}, 400, "must be a decimal number"),
    ({**EXPERTS, "boundary": "0"}, 400, "task must be one of text_to_video, image_to_video"),
    ({**EXPERTS, "boundary": "0", "task": "x" * 6000}, 400, "task must be one of"),
    ({**EXPERTS, "scheduler": ""}, 400, "Missing query parameter 'scheduler'"),
    ({**EXPERTS, "steps": ""}, 400, "Missing query parameter 'steps'"),
    ({**EXPERTS, "scheduler": "x" * 6000}, 200, "Unknown scheduler 'xxx"),
    ({**EXPERTS, "shift": "-5"}, 200, "NaN or infinite levels"),  # clamped to 0, where ModelSamplingSD3 makes NaN levels
    ({**EXPERTS, "boundary": "5"}, 200, '"boundary": 1.0'),  # clamped to the widget's 1
    ({**EXPERTS, "denoise": "0.00000000000000000001"}, 200, "more than the 10000 steps"),
    ({**EXPERTS, "denoise": "0"}, 200, "SIGMAS has 0 value(s)"),
    (EXPERTS_MAXIMA, 200, "levels"),
    ({**EXPERTS_MAXIMA, "method": "progressive_ar", "chunk_size": "128", "window_chunks": "64", "steps": "9984"}, 200, "levels"),
]


def layout_url(server, query: dict) -> str:
    return server.url + ROUTE + "?" + urllib.parse.urlencode(query)


@pytest.mark.parametrize("query, status, says", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_a_hostile_query_gets_a_quick_short_answer(comfy_server, query, status, says):
    got, body, seconds = get(layout_url(comfy_server, query))
    assert got == status, body[:300]
    assert seconds < ANSWER_WITHIN_S, f"{seconds:.2f} s"
    assert len(body) < MAX_ANSWER_BYTES
    answer = json.loads(body)
    assert says in json.dumps(answer)[:2000]
    print(f"{str(query)[:80]}: {got} in {seconds * 1000:.0f} ms, {len(body)} bytes")


def test_values_beyond_the_widgets_are_drawn_as_the_widget_limits(comfy_server):
    beyond = {**WIDGET_MAXIMA, "window": "513", "partitions": "65", "length": "100001", "steps": "10001"}
    _, clamped, _ = get(layout_url(comfy_server, beyond))
    _, maxima, _ = get(layout_url(comfy_server, WIDGET_MAXIMA))
    assert json.loads(clamped) == json.loads(maxima)
    assert json.loads(maxima)["levels"] == 512 * 64


def test_experts_values_beyond_the_widgets_are_drawn_as_the_widget_limits(comfy_server):
    _, clamped, _ = get(layout_url(comfy_server, {**EXPERTS, "boundary": "1.5", "shift": "250", "denoise": "3"}))
    _, maxima, _ = get(layout_url(comfy_server, {**EXPERTS, "boundary": "1", "shift": "100", "denoise": "1"}))
    assert json.loads(clamped) == json.loads(maxima)
    assert json.loads(maxima)["expert_schedule"] == {"boundary": 1.0, "scheduler": "simple", "shift": 100.0, "denoise": 1.0}


def test_the_longest_expert_schedules_are_drawn_in_full(comfy_server):
    for query, slots in (
        (EXPERTS_MAXIMA, 250 + 10_000),
        ({**EXPERTS_MAXIMA, "method": "progressive_ar", "chunk_size": "128", "window_chunks": "64", "steps": "9984"}, 65 * 128),
    ):
        status, body, seconds = get(layout_url(comfy_server, query))
        answer = json.loads(body)
        assert (status, answer["expert_warning"]) == (200, None)
        assert len(answer["expert"]) == slots
        assert {0, 1} <= set(answer["expert"])
        print(f"{query['method']}: {slots} slots with their experts in {seconds * 1000:.0f} ms")


def test_a_flood_of_hostile_queries_does_not_hold_up_other_requests(comfy_server):
    probe = comfy_server.url + "/queue"
    baseline = statistics.median(get(probe)[2] for _ in range(10))
    flood = [layout_url(comfy_server, query) for query, _, _ in HOSTILE_QUERIES] * 8 + [layout_url(comfy_server, WIDGET_MAXIMA)] * 40
    probe_latencies = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        started = time.perf_counter()
        answers = [pool.submit(get, url, 120.0) for url in flood]
        while not all(answer.done() for answer in answers):
            probe_latencies.append(get(probe)[2])
            time.sleep(0.02)
        flood_seconds = time.perf_counter() - started
        statuses = [answer.result()[0] for answer in answers]
    assert set(statuses) <= {200, 400}
    worst_probe = max(probe_latencies, default=0.0)
    print(
        f"{len(flood)} hostile requests answered in {flood_seconds:.1f} s; /queue answered {len(probe_latencies)} times meanwhile, "
        f"worst {worst_probe * 1000:.0f} ms (alone: median {baseline * 1000:.0f} ms)"
    )
    assert len(probe_latencies) >= 3
    assert worst_probe < 1.0 + 10 * baseline
    assert get(probe)[0] == 200
