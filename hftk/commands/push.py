"""`hftk push FOLDER --repo-id OWNER/NAME`, and `--push-to-hub` of the training commands.

The Hub client code (file selection, access checks, the upload) is `hftk.hub`; this module
decides when a command pushes: access is checked before any work, the upload happens once
the run folder is finished, from the main process only.
"""

from __future__ import annotations

from pathlib import Path

from hftk.errors import HftkError
from hftk.hub import check_push_access, push_folder

MISSING_REPO_ID = "--push-to-hub needs --hub-model-id OWNER/NAME (or output.hub_model_id in the recipe)"


def push(
    folder: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    include_checkpoints: bool = False,
) -> str:
    """Upload a finished run folder; returns the repository URL."""
    return push_folder(
        folder, repo_id, private=private, revision=revision, commit_message=commit_message, include_checkpoints=include_checkpoints
    )


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def check_push(output) -> None:
    """Before any work: a push needs a repo id, a reachable Hub and a token that can write."""
    if not output.push_to_hub:
        return
    if not output.hub_model_id:
        raise HftkError(MISSING_REPO_ID)
    if _is_main_process():
        check_push_access(output.hub_model_id)


def push_finished_run(folder: Path, output) -> str | None:
    """Upload a finished run when its recipe asks for it (main process only); returns the URL or None."""
    if not output.push_to_hub or not _is_main_process():
        return None
    if not output.hub_model_id:
        raise HftkError(MISSING_REPO_ID)
    return push_folder(folder, output.hub_model_id, private=output.hub_private)
