"""Beam pipeline options for the runners mimamori supports: Prism (local), Flink, Direct."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from mimamori.core.config import Settings
from mimamori.stack.prism import PrismRunner

# A year: the job's state and message streams must outlive any run (see pipeline_options).
JOB_STREAMS_TIMEOUT_S = 365 * 24 * 3600


def pipeline_options(settings: Settings, runner: str, beam_args: list[str] | None = None,
                     until_idle_s: float | None = None, bounded: bool = False) -> PipelineOptions:
    """Options for ``runner``.

    ``until_idle_s`` (reads that end when idle) and ``bounded`` (reads that end at stop offsets,
    a replay) let a streaming runner end the job once the sources are done.
    """
    beam_args = list(beam_args or [])
    if runner == "prism":
        prism = PrismRunner(settings).install()
        # Prism's info log is read line by line by this Python process: keep it to warnings.
        options = {"runner": "PrismRunner", "prism_location": str(prism), "environment_type": "LOOPBACK",
                   "prism_log_level": "warn"}
    elif runner == "flink":
        from mimamori.stack.flink import flink_job_server_jar

        # Flink finalizes bundles (and so the source commits offsets) when a checkpoint
        # completes: without checkpoints nothing would ever be committed.
        runner_config = settings.runner
        options = {"runner": "FlinkRunner", "flink_master": runner_config.flink_master,
                   "environment_type": runner_config.environment_type, "streaming": True,
                   "checkpointing_interval": runner_config.flink_checkpoint_interval_ms}
        if runner_config.environment_config:
            options["environment_config"] = runner_config.environment_config
        if runner_config.job_endpoint:  # a cluster's job server (Docker Compose, Kubernetes)
            options["job_endpoint"] = runner_config.job_endpoint
        else:  # Beam's Flink job server, started from the cached Maven jars for this run
            options["flink_job_server_jar"] = str(flink_job_server_jar(settings))
        if until_idle_s is not None or bounded:
            # Offsets are committed when a checkpoint completes after the bundle that read them:
            # checkpoint often enough that one completes before an idle source lets the job end.
            options["checkpointing_interval"] = min(runner_config.flink_checkpoint_interval_ms,
                                                    max(200, int((until_idle_s or 4.0) * 1000 / 4)))
            # With checkpoints on, Flink keeps finished sources (the Impulse) alive forever; let
            # them stop so the job can end when every partition read has ended.
            options["shutdown_sources_after_idle_ms"] = 1000
    elif runner == "direct":
        options = {"runner": "DirectRunner"}
    else:
        raise ValueError(f"unknown runner {runner!r}: prism, flink or direct")
    if runner != "direct" and not any(arg.startswith(("--job_server_timeout", "--job-server-timeout"))
                                      for arg in beam_args):
        # Beam puts this deadline (default 300 s) on the job's state and message streams too:
        # when it passes, wait_until_finish raises and a run that is meant to last (``mimamori
        # run`` 24/7, a long replay) dies after five minutes (found by bench/soak.py, issue 22).
        options["job_server_timeout"] = JOB_STREAMS_TIMEOUT_S
    return PipelineOptions(beam_args, save_main_session=False, **options)
