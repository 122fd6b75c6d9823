"""`from_pretrained` without transformers' LOAD REPORT table, and a one-line account of it instead.

Loading a pretraining checkpoint into a task model always leaves the new head random and the
pretraining head unused; transformers logs that as a many-line, ANSI-coloured table on every
fine-tune (and before a refusal that hftk then states in one line). Inside `quiet_load_report()`
that one record is dropped -- any other warning still shows -- and `describe_loading` says the same
in a line: which modules are new, which checkpoint weights went unused. Outside hftk's own loads
(a user's script) transformers' report is left alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

# The logger transformers' modeling_utils passes to `log_state_dict_report`.
REPORT_LOGGER = "transformers.modeling_utils"


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """Drop transformers' LOAD REPORT log record for loads inside the block."""
    logger, report_filter = logging.getLogger(REPORT_LOGGER), _DropLoadReport()
    logger.addFilter(report_filter)
    try:
        yield
    finally:
        logger.removeFilter(report_filter)


def module_names(keys) -> list[str]:
    """Parameter names -> their modules, sorted (`classifier.weight` -> `classifier`)."""
    return sorted({key.rsplit(".", 1)[0] for key in keys})


def describe_loading(source: str, loading_info: dict) -> str | None:
    """One line for `from_pretrained(..., output_loading_info=True)`'s info, or None when nothing is new or unused."""
    new, unused = module_names(loading_info.get("missing_keys") or []), module_names(loading_info.get("unexpected_keys") or [])
    mismatched = module_names(key for key, *_ in loading_info.get("mismatched_keys") or [])
    parts = []
    if new:
        parts.append(f"new, randomly initialised: {', '.join(new)}")
    if mismatched:
        parts.append(f"re-initialised (shape differs): {', '.join(mismatched)}")
    if unused:
        parts.append(f"not used from the checkpoint: {', '.join(unused)}")
    return f"loaded {source}; " + "; ".join(parts) if parts else None
