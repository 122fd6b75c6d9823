"""Share a saved run folder on the Hugging Face Hub.

`select_upload_files` decides exactly what leaves the machine (model, code, tokenizer, card,
results) and what never does by default (resume state, TensorBoard logs, pickles, partial
writes); `push_folder` uploads that list with `huggingface_hub.HfApi.upload_folder`.

The token is resolved by huggingface_hub (argument, else `HF_TOKEN`, else `hf auth login`'s
cache) and only ever travels in the Authorization header: no message here formats it, the
HfApi object holding it, or a request.
"""

from __future__ import annotations

import contextlib
import glob
import logging
from pathlib import Path, PurePosixPath

import httpx2  # huggingface_hub 2.x's HTTP client: its transport errors mean "network down"
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import HFValidationError, validate_repo_id

from hftk.errors import HftkError
from hftk.reporting.model_card import point_card_at_repo, write_model_card

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload model trained with hftk"

# Top-level folders with resume state (optimizer/scheduler/RNG) and training logs.
CHECKPOINT_DIRS = ("checkpoints", "checkpoint-*")
LOG_DIRS = ("runs", "logs", "wandb")
# Pickle-based formats: loading one can run arbitrary code, so weights go up as safetensors only.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Accelerate's `save_state` files that only exist pickled (optimizer, LR scheduler, sampler, AMP
# scaler, RNG states): the one pickle kind uploaded, and only inside checkpoints when asked.
RESUME_STATE_PREFIXES = ("optimizer", "scheduler", "sampler", "scaler", "random_states", "custom_checkpoint")
LOGIN_HINT = "run `hf auth login` or set HF_TOKEN"


def _is_checkpoint_path(parts: tuple[str, ...]) -> bool:
    return len(parts) > 1 and any(PurePosixPath(parts[0]).match(p) for p in CHECKPOINT_DIRS)


def _is_log_path(parts: tuple[str, ...]) -> bool:
    return (len(parts) > 1 and parts[0] in LOG_DIRS) or "tfevents" in parts[-1]


def select_upload_files(
    folder: Path, *, include_checkpoints: bool = False, include_logs: bool = False
) -> list[str]:
    """The exact files `push_folder` uploads, as sorted paths relative to `folder` (posix).

    Always left out: pickled weights and any other pickle (`*.bin`, `*.pt`, `*.pkl`, ...), hidden
    entries (`.tmp*` partial writes, `.git`, `.cache`) and `__pycache__`. Left out unless asked:
    `checkpoints/` and `checkpoint-*/` (resume state: with `include_checkpoints` their safetensors,
    JSON and Accelerate's optimizer/scheduler/RNG pickles go up, pickled weights still do not),
    `runs/`, `logs/`, `wandb/` and TensorBoard event files.
    """
    folder = Path(folder)
    selected = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__pycache__" for part in parts):
            continue
        name = parts[-1].lower()
        in_checkpoint = _is_checkpoint_path(parts)
        if in_checkpoint and not include_checkpoints:
            continue
        if name.endswith(".pyc"):
            continue
        if name.endswith(PICKLE_SUFFIXES) and not (in_checkpoint and name.startswith(RESUME_STATE_PREFIXES)):
            continue
        if _is_log_path(parts) and not include_logs:
            continue
        selected.append(PurePosixPath(*parts).as_posix())
    return sorted(selected)


def _one_line(err: Exception) -> str:
    """An error's text on one line (the CLI prints HftkError messages as a single line)."""
    text = getattr(err, "server_message", None) or str(err) or type(err).__name__
    return " ".join(line.strip(" -") for line in text.strip().splitlines() if line.strip())


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise HftkError(f"cannot push {folder}: no such folder; pass the output folder of a hftk run")
    if not (folder / "config.json").is_file():
        raise HftkError(f"cannot push {folder}: it has no config.json; pass a folder written by a hftk run")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.onnx")):  # ONNX: `hftk quantize --format onnx`
        if (folder / "model_int8.pt").is_file():  # an older `hftk quantize` folder (hftk.quantize.WEIGHTS)
            import json

            try:
                source = json.loads((folder / "quantization.json").read_text()).get("source") or "FP32_FOLDER"
            except (OSError, ValueError):
                source = "FP32_FOLDER"
            raise HftkError(
                f"cannot push {folder}: its int8 weights are a torch pickle from an older `hftk quantize`, which "
                f"from_pretrained cannot load and nobody should unpickle from the Hub; rewrite it with "
                f"`hftk quantize {source} -o OUT` and push OUT"
            )
        hint = " (only pickled weights found: re-save with save_pretrained)" if any(
            p.suffix in PICKLE_SUFFIXES for p in folder.iterdir()
        ) else ""
        raise HftkError(f"cannot push {folder}: no *.safetensors or *.onnx weights{hint}; train or save the model first")


def _check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HftkError(
            f"invalid repo id {repo_id!r}: use OWNER/NAME with letters, digits, '-', '_' or '.'"
        ) from err


@contextlib.contextmanager
def hub_errors(repo_id: str, api: HfApi, *, before_training: bool):
    """The Hub client's errors as one line each: login, refusal, offline mode, no network.

    `before_training`: the access check of `--push-to-hub`, whose way out is to drop the flag.
    """
    drop = ", or drop --push-to-hub" if before_training else ""
    try:
        yield
    except LocalTokenNotFoundError as err:
        checked = " (checked before training)" if before_training else ""
        raise HftkError(f"cannot push to {repo_id}: not logged in: {LOGIN_HINT}{checked}") from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403) and before_training:
            raise HftkError(f"cannot push to {repo_id}: the Hub rejects the token (HTTP {status}): {LOGIN_HINT}") from err
        if status in (401, 403):
            raise HftkError(
                f"cannot push to {repo_id}: not logged in, or the token cannot write there (HTTP {status}): "
                f"{LOGIN_HINT} with a write token"
            ) from err
        if before_training:
            raise HftkError(f"cannot check Hub access for {repo_id} (HTTP {status}): {_one_line(err)}") from err
        raise HftkError(f"the Hub refused the push to {repo_id} (HTTP {status}): {_one_line(err)}") from err
    except OfflineModeIsEnabled as err:
        raise HftkError(f"cannot push: HF_HUB_OFFLINE is set; unset it to reach the Hub{drop}") from err
    except (httpx2.TransportError, OSError) as err:
        raise HftkError(
            f"cannot reach the Hub at {api.endpoint} ({type(err).__name__}): check your network or HF_ENDPOINT{drop}"
        ) from err


def check_push_access(repo_id: str, *, token: str | None = None, api: HfApi | None = None) -> None:
    """Before training: the repo id is valid, the Hub answers, and the token may write under its owner.

    `--push-to-hub` uploads when training ends; finding a typo'd id or a missing login then
    would waste the run. One `whoami` request checks login and reachability.
    """
    _check_repo_id(repo_id)
    if constants.is_offline_mode():
        raise HftkError("cannot push: HF_HUB_OFFLINE is set; unset it to reach the Hub, or drop --push-to-hub")
    api = api or HfApi()
    with hub_errors(repo_id, api, before_training=True):
        me = api.whoami(token=token)
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HftkError(f"cannot push to {repo_id}: the token is read-only; {LOGIN_HINT} with a write token")
    owner = repo_id.split("/")[0] if "/" in repo_id else me.get("name")
    owners = {me.get("name"), *(org.get("name") for org in me.get("orgs") or [])}
    if role != "fineGrained" and owner not in owners:
        raise HftkError(
            f"cannot push to {repo_id}: you are logged in as {me.get('name')}, who cannot write under {owner!r}; "
            f"use {me.get('name')}/NAME or one of your organisations"
        )


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    include_checkpoints: bool = False,
    include_logs: bool = False,
    api: HfApi | None = None,
) -> str:
    """Create `repo_id` if needed and upload the run folder to it; return the commit URL.

    A folder without README.md gets a generated model card first (`write_model_card`).
    `private=False` leaves visibility to the Hub (public, unless the owner org defaults to private);
    an existing repo keeps its visibility either way. `revision` names a branch, created if missing.
    """
    folder = Path(folder)
    _check_folder(folder)
    _check_repo_id(repo_id)
    if constants.is_offline_mode():
        raise HftkError("cannot push: HF_HUB_OFFLINE is set; unset it to reach the Hub")
    if not (folder / "README.md").is_file():
        logger.info("No README.md in %s: writing a model card", folder)
        write_model_card(folder, repo_id=repo_id)
    elif point_card_at_repo(folder, repo_id):
        logger.info("Model card usage snippet now loads %s", repo_id)
    files = select_upload_files(folder, include_checkpoints=include_checkpoints, include_logs=include_logs)

    api = api or HfApi()
    try:
        with hub_errors(repo_id, api, before_training=False):
            repo_url = api.create_repo(
                repo_id, private=True if private else None, exist_ok=True, repo_type="model", token=token
            )
            if revision and revision != constants.DEFAULT_REVISION:
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model", token=token)
            logger.info("Uploading %d files from %s to %s", len(files), folder, repo_id)
            commit = api.upload_folder(
                folder_path=folder,
                repo_id=repo_id,
                repo_type="model",
                revision=revision,
                commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
                allow_patterns=[glob.escape(f) for f in files],  # exact names, no wildcard surprises
                token=token,
            )
    except ValueError as err:  # e.g. README.md metadata the Hub rejects
        raise HftkError(f"cannot push to {repo_id}: {_one_line(err)}; fix the model card (README.md)") from err
    url = getattr(commit, "commit_url", None) or str(repo_url)
    logger.info("Pushed %s to %s", folder, url)
    return url
