"""Model cards for saved hftk runs: Hub metadata (YAML) plus a README a person can act on.

The card is built from what the run folder already holds (config.json, the safetensors header,
recipe.yaml, metrics.json, loss.png) so it describes the exact artifact being shared, and the
metadata goes through `huggingface_hub.ModelCardData`/`EvalResult` so the Hub parses it
(pipeline widget, model-index results) the same way it parses any transformers model.

Only evaluation scores go into `model-index` (the Hub shows them as benchmark results), each
with the data it was measured on; training facts (throughput, wall time, tokens, parameters)
go into the card's text. The licence and the data names come from `hftk.reporting.provenance`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from hftk.errors import HftkError
from hftk.reporting.provenance import DataRef, default_license, run_data

# Architecture suffix -> (pipeline tag, transformers Auto class). Checked in order.
HEADS: list[tuple[str, str, str]] = [
    ("ForMaskedLM", "fill-mask", "AutoModelForMaskedLM"),
    ("ForCausalLM", "text-generation", "AutoModelForCausalLM"),
    ("ForSequenceClassification", "text-classification", "AutoModelForSequenceClassification"),
    ("ForQuestionAnswering", "question-answering", "AutoModelForQuestionAnswering"),
    ("ForTokenClassification", "token-classification", "AutoModelForTokenClassification"),
    ("Model", "feature-extraction", "AutoModel"),
]

# Keys of a Trainer/Accelerate metrics dict that are bookkeeping, not model quality.
_BOOKKEEPING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second", "_flos", "_samples")
_BOOKKEEPING_KEYS = {"epoch", "step", "global_step", "total_flos"}
# Evaluation scores: measured on held-out data (`eval_*` validation, `test_*` test, pretraining's perplexity).
_EVAL_PREFIXES = ("eval_", "test_")
_UNPREFIXED_EVAL = {"perplexity"}

# What a short usage example feeds each pipeline.
_PIPELINE_EXAMPLES = {
    "fill-mask": 'print(pipe(f"The weather today is {pipe.tokenizer.mask_token}."))',
    "text-generation": 'print(pipe("Once upon a time", max_new_tokens=30)[0]["generated_text"])',
    "text-classification": 'print(pipe("I really enjoyed this book."))',
    "question-answering": (
        'print(pipe(question="Who wrote the letter?", context="The letter was written by Elizabeth."))'
    ),
    "token-classification": (
        'print(pipe("Elizabeth Bennet lives in Hertfordshire.", aggregation_strategy="simple"))'
    ),
    "feature-extraction": 'print(len(pipe("A sentence to embed.")[0]))',
}


def head_for(architectures: list[str] | None) -> tuple[str | None, str]:
    """(pipeline tag, Auto class name) for the first architecture whose head we know."""
    for arch in architectures or []:
        for suffix, tag, auto_class in HEADS:
            if arch.endswith(suffix):
                return tag, auto_class
    return None, "AutoModel"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HftkError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}): re-save the {what}") from err


def _load_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise HftkError(f"model folder {folder} does not exist: pass the output folder of a hftk run")
    path = folder / "config.json"
    if not path.is_file():
        raise HftkError(f"{folder} has no config.json: pass a folder written by save_pretrained / a hftk run")
    config = _read_json(path, "model with save_pretrained")
    if not isinstance(config, dict):
        raise HftkError(f"{path} must hold a JSON object: re-save the model with save_pretrained")
    return config


def load_metrics(folder: Path) -> dict[str, Any]:
    """metrics.json as a dict ({} when the run has none)."""
    path = folder / "metrics.json"
    if not path.is_file():
        return {}
    metrics = _read_json(path, "metrics (rerun evaluation)")
    if not isinstance(metrics, dict):
        raise HftkError(f"{path} must be a flat JSON object of metric name -> value: rerun evaluation")
    return metrics


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def eval_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The quality metrics that go into the model-index: evaluation scores only.

    `eval_*` / `test_*` keys and `perplexity` (finite numbers) are kept; runtime, throughput and
    example counts among them are not. Everything else (tokens_seen, tokens_per_second,
    wall_time_seconds, num_parameters, train_*) describes the training run, not the model's quality.
    """
    kept = {}
    for key, value in metrics.items():
        if not _is_number(value) or key in _BOOKKEEPING_KEYS or key.endswith(_BOOKKEEPING_SUFFIXES):
            continue
        if key.startswith(_EVAL_PREFIXES) or key in _UNPREFIXED_EVAL:
            kept[key] = value
    return kept


def training_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """Every other metrics.json entry: what the run did (steps, tokens, time, throughput, size)."""
    results = eval_metrics(metrics)
    return {key: value for key, value in metrics.items() if key not in results and not isinstance(value, (dict, list))}


def _evaluated_on(key: str, evaluated: dict[str, DataRef]) -> DataRef | None:
    return evaluated.get("test" if key.startswith("test_") else "eval")


def count_parameters(folder: Path) -> int | None:
    """Number of stored parameters, read from the safetensors headers only (no tensor is loaded).

    transformers writes tied weights once, so the sum is the model's unique parameter count.
    """
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="numpy") as f:
            for name in f.keys():
                total += math.prod(f.get_slice(name).get_shape())
    return total


def _human_count(n: int) -> str:
    """12,345,678 (12.3M): exact for the curious, short for the skimmer."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n:,} ({n / size:.1f}{unit})"
    return f"{n:,}"


def _is_hub_id(name: str) -> bool:
    """True for a Hub repo id (not a local path), the only thing Hub metadata fields accept."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not Path(name).exists()


_POSITION_NAMES = {
    "learned": "learned absolute",
    "absolute": "learned absolute",
    "sinusoidal": "sinusoidal (fixed)",
    "rope": "rotary (RoPE)",
}
_NORM_NAMES = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}


def _positional_encoding(config: dict[str, Any]) -> str | None:
    kind = next((str(config[k]) for k in ("position_embedding_type", "positional_encoding") if config.get(k)), None)
    if kind is None and ("rope_theta" in config or config.get("rope_parameters")):
        kind = "rope"
    if kind is None:
        return None
    base = config.get("rope_base") or config.get("rope_theta")
    if kind == "rope" and base:
        return f"rotary (RoPE, base {base:g})"
    return _POSITION_NAMES.get(kind, kind)


def _normalization(config: dict[str, Any]) -> str | None:
    for key in ("norm_type", "normalization", "layer_norm_type"):
        if config.get(key):
            kind = _NORM_NAMES.get(str(config[key]).lower(), str(config[key]))
            break
    else:
        kind = "RMSNorm" if "rms_norm_eps" in config else "LayerNorm" if "layer_norm_eps" in config else None
    placement = config.get("norm_position") or config.get("norm_placement")
    if placement is None and isinstance(config.get("pre_norm"), bool):
        placement = "pre-norm" if config["pre_norm"] else "post-norm"
    if kind and placement:
        return f"{kind} ({placement})"
    return kind


def _details_table(config: dict[str, Any], n_params: int | None) -> str:
    rows = [
        ("Architecture", ", ".join(config.get("architectures") or []) or None),
        ("Model type", f"`{config['model_type']}`" if config.get("model_type") else None),
        ("Layers", config.get("num_hidden_layers")),
        ("Hidden size", config.get("hidden_size")),
        ("Attention heads", config.get("num_attention_heads")),
        ("Key/value heads", config.get("num_key_value_heads")),
        ("Feed-forward size", config.get("intermediate_size")),
        ("Positional encoding", _positional_encoding(config)),
        ("Max positions", config.get("max_position_embeddings")),
        ("Normalization", _normalization(config)),
        ("Activation", config.get("hidden_act")),
        ("Vocabulary size", config.get("vocab_size")),
        ("Parameters", _human_count(n_params) if n_params is not None else None),
    ]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows if value is not None]
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else str(value)
    return str(value)


def _results_section(metrics: dict[str, Any], evaluated: dict[str, DataRef]) -> str:
    if not metrics:
        return "No evaluation metrics were saved with this model (no `metrics.json`)."
    results = eval_metrics(metrics)
    if not results:
        return "No evaluation scores in `metrics.json`."
    lines = ["| Metric | Value | Data |", "|---|---|---|"]
    for key, value in results.items():
        data = _evaluated_on(key, evaluated)
        where = f"{data.name}, {data.split} split" if data and data.split else (data.name if data else "not recorded")
        lines.append(f"| {key} | {_format_value(value)} | {where} |")
    return "\n".join(lines)


def _facts_section(metrics: dict[str, Any]) -> str:
    facts = training_facts(metrics)
    if not facts:
        return ""
    lines = ["| | |", "|---|---|"] + [f"| {key} | {_format_value(value)} |" for key, value in facts.items()]
    return "\n".join(lines)


def _usage_section(model_id: str, auto_class: str, pipeline_tag: str | None) -> str:
    imports = f"from transformers import {auto_class}, AutoTokenizer"
    if pipeline_tag:
        imports += ", pipeline"
    lines = [
        "```python",
        imports,
        "",
        f'model_id = "{model_id}"',
        "tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)",
        f"model = {auto_class}.from_pretrained(model_id, trust_remote_code=True)",
    ]
    if pipeline_tag:
        lines += [
            "",
            f'pipe = pipeline("{pipeline_tag}", model=model_id, trust_remote_code=True)',
            _PIPELINE_EXAMPLES[pipeline_tag] if pipeline_tag in _PIPELINE_EXAMPLES else 'print(pipe("Hello"))',
        ]
    lines.append("```")
    return "\n".join(lines)


def render_model_card(
    folder: Path,
    *,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    task: str | None = None,
    extra_tags: list[str] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    license: str | None = None,
) -> str:
    """The README.md text (YAML metadata + markdown body) for a saved run folder.

    `task` overrides the pipeline tag derived from `config.json`'s architectures. `repo_id` is the
    id in the usage snippet (default: the local folder; `push_folder` swaps in the repo id).
    `model_name` titles the card and the model-index (default: repo name, else folder name; a
    hidden staging folder such as `run/.final.tmp` counts as its parent `run`). The training and
    evaluation data and the licence are read from `recipe.yaml` (`hftk.reporting.provenance`); `datasets`
    and `license` override them.
    """
    folder = Path(folder)
    config = _load_config(folder)
    metrics = load_metrics(folder)
    recipe = _load_recipe(folder)
    trained_on, evaluated = run_data(recipe)
    if datasets is None:
        datasets = [ref.id if ref.hub else ref.name for ref in trained_on]
    license_reason = "set by the caller."
    if license is None:
        license, license_reason = default_license(recipe, base_model)
    pipeline_tag, auto_class = head_for(config.get("architectures"))
    pipeline_tag = task or pipeline_tag
    model_type = config.get("model_type")
    final_folder = folder.parent if folder.resolve().name.startswith(".") else folder
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else final_folder.resolve().name)
    model_id = repo_id or str(final_folder)
    datasets = list(datasets or [])
    known_hub = {ref.id for ref in [*trained_on, *evaluated.values()] if ref.hub}
    hub_datasets = [d for d in datasets if d in known_hub or _is_hub_id(d)]
    hub_datasets += sorted(known_hub - set(hub_datasets))
    hub_base_model = base_model if base_model and _is_hub_id(base_model) else None

    tags = ["hftk"] + ([model_type] if model_type else [])
    if config.get("auto_map"):
        tags.append("custom_code")
    tags += list(extra_tags or [])

    eval_results = _eval_results(metrics, evaluated, datasets, pipeline_tag)
    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=tags,
        datasets=hub_datasets or None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        base_model=hub_base_model,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )

    body = "\n\n".join(
        [
            f"# {model_name}",
            _intro(config, base_model, hub_base_model, datasets),
            "## Model details",
            _details_table(config, count_parameters(folder)),
            "## Training",
            _training_section(folder, metrics),
            "## Results",
            _results_section(metrics, evaluated),
            "## Usage",
            _usage_section(model_id, auto_class, pipeline_tag),
            "## Licence",
            f"`{license}`: {license_reason}",
        ]
    )
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n").content


def _eval_results(metrics: dict[str, Any], evaluated: dict, datasets: list[str], pipeline_tag: str | None) -> list[EvalResult]:
    """The model-index entries: one per evaluation score, on the data it was scored on."""
    fallback = DataRef(datasets[0], datasets[0]) if datasets else DataRef("unrecorded", "data not recorded (no recipe.yaml)")
    eval_results = []
    for key, value in eval_metrics(metrics).items():
        data = _evaluated_on(key, evaluated) or fallback
        eval_results.append(
            EvalResult(
                task_type=pipeline_tag or "other",
                dataset_type=data.id,
                dataset_name=data.name,
                dataset_config=data.config,
                dataset_split=data.split,
                metric_type=key.removeprefix("eval_").removeprefix("test_"),
                metric_name=key,
                metric_value=value,
            )
        )
    return eval_results


def _intro(config: dict[str, Any], base_model: str | None, hub_base_model: str | None, datasets: list[str]) -> str:
    """The card's first paragraph: what the model is, where it started, what it was trained on."""
    if base_model:
        origin = f"fine-tuned from [{base_model}](https://huggingface.co/{base_model})" if hub_base_model else (
            f"fine-tuned from `{base_model}`"
        )
    else:
        origin = "trained"
    intro = f"A `{config.get('model_type') or 'transformers'}` model {origin} with hftk"
    if datasets:
        intro += " on " + ", ".join(f"`{d}`" if _is_hub_id(d) else d for d in datasets)
    intro += "."
    if config.get("auto_map"):
        intro += " Its modeling code ships in this repository, so loading it needs `trust_remote_code=True`."
    return intro


def _training_section(folder: Path, metrics: dict[str, Any]) -> str:
    """The resolved recipe, the run's facts and the loss curve."""
    recipe_path = folder / "recipe.yaml"
    if recipe_path.is_file():
        training = "The resolved recipe of this run (`recipe.yaml`):\n\n```yaml\n"
        training += recipe_path.read_text(encoding="utf-8").rstrip("\n") + "\n```"
    else:
        training = "No `recipe.yaml` was saved with this model."
    facts = _facts_section(metrics)
    if facts:
        training += "\n\n### Training facts\n\nWhat the run did (not evaluation results):\n\n" + facts
    if (folder / "loss.png").is_file():
        training += "\n\n### Loss curve\n\n![loss](loss.png)"
    return training


def _load_recipe(folder: Path) -> dict[str, Any]:
    path = folder / "recipe.yaml"
    if not path.is_file():
        return {}
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}  # the card is still worth writing; its data is then "not recorded"
    return recipe if isinstance(recipe, dict) else {}


def write_model_card(folder: Path | str, **kwargs: Any) -> Path:
    """Render the card (same arguments as `render_model_card`) and write `folder/README.md` atomically."""
    folder = Path(folder)
    target = folder / "README.md"
    _write_atomic(target, render_model_card(folder, **kwargs))
    return target


_MODEL_ID_LINE = re.compile(r'^model_id = "[^"\n]*"$', flags=re.M)


def point_card_at_repo(folder: Path | str, repo_id: str) -> bool:
    """Make an hftk-generated card's usage snippet load `repo_id`; True if README.md changed.

    Cards written at the end of training only know the local folder. Only the snippet's
    `model_id = "..."` line is replaced, and only in a card tagged `hftk`; anything else a person
    wrote is left as is.
    """
    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8")
    try:
        tags = ModelCard(text, ignore_metadata_errors=True).data.tags or []
    except (ValueError, yaml.YAMLError):  # a broken card is the Hub's validation to report, not ours
        return False
    new_text = _MODEL_ID_LINE.sub(f'model_id = "{repo_id}"', text) if "hftk" in tags else text
    if new_text == text:
        return False
    _write_atomic(path, new_text)
    return True


def _write_atomic(target: Path, text: str) -> None:
    """Write via a temp file + os.replace: a crash mid-write leaves the previous file intact.

    The temp name starts with `.tmp` so `hftk.hub.select_upload_files` never uploads a leftover.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-README-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a README is meant to be read
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
