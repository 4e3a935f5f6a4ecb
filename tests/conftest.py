"""Shared by both tiers: with LONGVIDEO_NO_SKIPS=1 (as CI sets it) a skipped test is a failure.

A test skips when something it needs is missing (a ComfyUI checkout, Chromium, playwright); CI
installs all of it, so there a skip means a broken setup and must not pass quietly.
"""

import os

import pytest

NO_SKIPS = os.environ.get("LONGVIDEO_NO_SKIPS") == "1"


def _fail_instead_of_skip(report) -> None:
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but LONGVIDEO_NO_SKIPS=1 requires every test to run. Reason given: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_instead_of_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_instead_of_skip(outcome.get_result())
