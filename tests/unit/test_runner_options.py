"""Beam options of the runners: a long run must not die of a job-service deadline (issue 22's soak)."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PortableOptions

from mimamori.cli.runner import JOB_STREAMS_TIMEOUT_S, pipeline_options
from mimamori.core.config import load_settings


@pytest.fixture
def settings(tmp_path):
    settings = load_settings("local")
    settings.runner.prism_path = tmp_path / "prism"  # never built or started here
    return settings


def test_the_job_streams_outlive_any_run_on_prism_and_flink(settings):
    # Beam's default (300 s) is also the deadline of the job's state stream: `mimamori run`
    # died five minutes in (bench/soak.py found it).
    for runner in ("prism", "flink"):
        settings.runner.job_endpoint = "localhost:8099"  # flink: no job server jar to look for
        options = pipeline_options(settings, runner).view_as(PortableOptions)
        assert options.job_server_timeout == JOB_STREAMS_TIMEOUT_S >= 365 * 24 * 3600


def test_a_timeout_given_to_beam_is_kept(settings):
    options = pipeline_options(settings, "prism", ["--job_server_timeout=20"]).view_as(PortableOptions)
    assert options.job_server_timeout == 20
