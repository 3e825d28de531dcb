"""Beam pipeline options for the runners mimamori supports: Prism (local), Flink, Direct."""

from __future__ import annotations

import logging

from apache_beam.options.pipeline_options import PipelineOptions

from mimamori.config import Settings
from mimamori.stack.prism import PrismRunner


class _QuietFinalizeErrors(logging.Filter):
    """Prism asks the SDK to finalize bundles that registered no finalizer; the SDK logs an
    error for each although nothing failed. Hide exactly those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not in a finalizable state" not in record.getMessage()


def pipeline_options(settings: Settings, runner: str, beam_args: list[str] | None = None) -> PipelineOptions:
    beam_args = list(beam_args or [])
    if runner == "prism":
        prism = PrismRunner(settings).install()
        options = {"runner": "PrismRunner", "prism_location": str(prism), "environment_type": "LOOPBACK"}
    elif runner == "flink":
        from mimamori.stack.flink import flink_job_server_jar

        options = {"runner": "FlinkRunner", "flink_master": settings.runner.flink_master,
                   "environment_type": "LOOPBACK", "streaming": True,
                   "flink_job_server_jar": str(flink_job_server_jar(settings))}
    elif runner == "direct":
        options = {"runner": "DirectRunner"}
    else:
        raise ValueError(f"unknown runner {runner!r}: prism, flink or direct")
    logging.getLogger("apache_beam.runners.worker.sdk_worker").addFilter(_QuietFinalizeErrors())
    return PipelineOptions(beam_args, save_main_session=False, **options)
