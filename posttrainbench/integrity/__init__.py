"""Integrity of a finished run: tampering with the evaluation, the submitted model's lineage, test items in the
agent's data, network and API misuse, and LLM judges. `check_run` writes integrity.json."""

from posttrainbench.integrity.check import check_run
from posttrainbench.integrity.report import FLAGS, Check, IntegrityReport, read_report

__all__ = ["FLAGS", "Check", "IntegrityReport", "check_run", "read_report"]
