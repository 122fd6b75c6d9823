"""Time to quality: hftk's shipped pretraining recipes against the Hugging Face route, same minutes.

    python benchmarks/time_to_quality.py --budget-minutes 39                 # the issue-30 measurement
    python benchmarks/time_to_quality.py --smoke                              # tiny shapes, ~1 minute per arm
    python benchmarks/time_to_quality.py --dry-run                            # plan, shapes, parameter counts only
    python benchmarks/time_to_quality.py --objectives mlm --arms hftk modernbert-25 --steps 200 --skip-finetune

The arms (`--arms`, default all of the chosen `--objectives`):

    mlm  hftk            `hftk pretrain pretrain-default` (hftk_bert, 25 % masking, its own schedule)
         modernbert-15   transformers' run_mlm.py + Trainer, ModernBertForMaskedLM, 15 % masking
         modernbert-25   the same at 25 % masking
         bert            run_mlm.py + Trainer, BertForMaskedLM, 15 % masking (run_mlm's default)
    clm  hftk-gpt        `hftk pretrain pretrain-gpt` (hftk_gpt)
         llama           transformers' run_clm.py + Trainer, LlamaForCausalLM
         gpt2            run_clm.py + Trainer, GPT2LMHeadModel

Every arm of an objective gets the same corpus (the vendored Austen novels, hftk's 2 % validation
split written to text files every arm reads), hftk's tokenizer (8k WordPiece for MLM, 8k byte-level
BPE for CLM, trained once on the training split), the same shape (4 layers x 256, batch 32 x 128,
parameter counts within 2 % of hftk's: printed, and checked), a linear schedule with 6 % warm-up,
one thread each, and the same wall-clock budget. The arms of an objective run concurrently, so the
machine's load hits them alike. A Hugging Face arm runs once per learning rate in `--hf-lrs` (the
issue: the better of 1e-3 and 5e-4); the report takes the better one.

Phases (each skipped when its output exists under `--workdir`, so an interrupted run continues):

1. prepare     corpus split, tokenizers, one config folder per arm; parameter counts.
2. calibrate   every arm concurrently for `--calibration-steps`: seconds per step under this load.
3. pretrain    every arm concurrently with steps = budget / (seconds per step), so each schedule
               decays to its end inside the budget; `--points` checkpoints each, evenly spaced.
4. evaluate    one evaluator for every checkpoint of every arm: the same held-out blocks (hftk's
               packing of the validation split), for MLM the same 15 % of positions (80/10/10, a
               fixed seed), loss over those positions only; for CLM the per-token next-token loss.
               A checkpoint's minutes are its step times the arm's measured seconds per step.
5. finetune    each arm's final model fine-tuned identically with hftk: `hftk finetune ner` on
               wnut16 (MLM arms; hftk_gpt has no token-classification head) and `hftk finetune
               classification` on fine_foods at 1,000 labels, seeds `--seeds`, LR 3e-4 for all,
               sequences cut at 64 tokens; the test file is scored once, after the last step.
6. report      perplexity against minutes (a plot, `curves-<objective>.png`), the minutes each arm
               needs to reach every other arm's final perplexity, downstream mean and spread;
               printed, and written to `<workdir>/report.md` (paste it into
               benchmarks/RESULTS-time-to-quality.md with the machine and load lines it prints).

Needs ../shared (fine-tuning data) and transformers' example scripts, vendored in tests/examples/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "tests" / "examples"
SHARED = REPO.parent / "shared" / "data"
SPLIT_SEED = 42  # hftk's recipe default seed: the same 2 % the shipped recipes hold out
EVAL_MASK_SEED = 0
EVAL_MASK_PROBABILITY = 0.15
FINETUNE_LR = 3e-4


# ---------------------------------------------------------------------------------------------
# Shapes and arms
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 1024  # hftk's GELU feed-forward; GLU arms get 2/3 of it (same parameters)
    block: int = 128
    batch: int = 32
    vocab: int = 8192

    @property
    def glu_intermediate(self) -> int:
        """A gated feed-forward (3 matrices) with the parameters of a plain one (2 matrices)."""
        return round(2 * self.intermediate / 3)


FULL = Shape()
SMOKE = Shape(hidden=64, layers=2, heads=2, intermediate=256, block=64, batch=8, vocab=4096)


@dataclass
class Arm:
    name: str
    objective: str  # mlm | clm
    runner: str  # hftk | run_mlm | run_clm
    mlm_probability: float | None = None
    learning_rate: float | None = None  # None: the hftk recipe's own
    family: str = ""  # arms of one family differ only by learning rate; the report keeps the better one


BASE_ARMS = {
    "hftk": ("mlm", "hftk", None),
    "modernbert-15": ("mlm", "run_mlm", 0.15),
    "modernbert-25": ("mlm", "run_mlm", 0.25),
    "bert": ("mlm", "run_mlm", 0.15),
    "hftk-gpt": ("clm", "hftk", None),
    "llama": ("clm", "run_clm", None),
    "gpt2": ("clm", "run_clm", None),
}


def make_arms(names: list[str], objectives: list[str], hf_lrs: list[float]) -> list[Arm]:
    arms = []
    for name in names or [n for n, spec in BASE_ARMS.items() if spec[0] in objectives]:
        objective, runner, probability = BASE_ARMS[name]
        if objective not in objectives:
            continue
        if runner == "hftk":
            arms.append(Arm(name, objective, runner, probability, None, name))
        else:
            for lr in hf_lrs:
                suffix = f"-lr{lr:g}" if len(hf_lrs) > 1 else ""
                arms.append(Arm(name + suffix, objective, runner, probability, lr, name))
    return arms


def hf_config(family: str, shape: Shape, tokenizer):
    """The transformers config of a Hugging Face arm at hftk's shape (ModernBERT needs a config file:
    run_mlm's --config_overrides refuses global_attn_every_n_layers and keeps 22 layer_types)."""
    from transformers import BertConfig, GPT2Config, LlamaConfig, ModernBertConfig

    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if family.startswith("modernbert"):
        return ModernBertConfig(
            **common, hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
            intermediate_size=shape.glu_intermediate, max_position_embeddings=shape.block,
            layer_types=["full_attention"] * shape.layers,  # every layer global: a 128-token window is global anyway
            local_attention=shape.block, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
            classifier_pooling="mean",  # as hftk's recipe: masked LM trains no [CLS] in either
        )  # fmt: skip
    if family == "bert":
        return BertConfig(
            **common, hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
            intermediate_size=shape.intermediate, max_position_embeddings=shape.block,
        )  # fmt: skip
    if family == "llama":
        return LlamaConfig(
            **common, hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
            num_key_value_heads=shape.heads, intermediate_size=shape.glu_intermediate,
            max_position_embeddings=shape.block, tie_word_embeddings=True,  # as hftk_gpt (and GPT-2)
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
    if family == "gpt2":
        return GPT2Config(
            **common, n_embd=shape.hidden, n_layer=shape.layers, n_head=shape.heads, n_inner=shape.intermediate,
            n_positions=shape.block, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # dropout 0 in pretraining, as hftk's recipes
        )  # fmt: skip
    raise ValueError(family)


def hftk_overrides(shape: Shape) -> list[str]:
    """`--set` overrides that put the shipped recipe at `shape` (none at the full shape: the recipe as shipped)."""
    if shape == FULL:
        return []
    return [
        f"model.config.hidden_size={shape.hidden}", f"model.config.num_hidden_layers={shape.layers}",
        f"model.config.num_attention_heads={shape.heads}", f"model.config.intermediate_size={shape.intermediate}",
        f"model.config.max_position_embeddings={shape.block}", f"data.max_seq_length={shape.block}",
        f"training.per_device_train_batch_size={shape.batch}", f"tokenizer.vocab_size={shape.vocab}",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Phase 1: corpus split, tokenizers, configs
# ---------------------------------------------------------------------------------------------


def prepare(work: Path, arms: list[Arm], shape: Shape, log) -> None:
    from hftk.data.corpus import load_text_corpus
    from hftk.data.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    data = work / "data"
    if not (data / "valid.txt").is_file():
        corpus = load_text_corpus(validation_split_percentage=2, seed=SPLIT_SEED)
        data.mkdir(parents=True, exist_ok=True)
        for split, name in (("train", "train.txt"), ("validation", "valid.txt")):
            lines = [text.replace("\n", " ") for text in corpus[split]["text"]]
            (data / name).write_text("\n".join(lines) + "\n")
        log(f"corpus: {len(corpus['train'])} training and {len(corpus['validation'])} validation paragraphs -> {data}")
    for objective in sorted({arm.objective for arm in arms}):
        folder = work / f"tokenizer-{objective}"
        if not (folder / "tokenizer_config.json").is_file():
            texts = (data / "train.txt").read_text().splitlines()
            kind = "wordpiece" if objective == "mlm" else "bpe"
            tokenizer = train_tokenizer(texts, kind=kind, vocab_size=shape.vocab, model_max_length=shape.block)
            save_tokenizer(tokenizer, folder)
            log(f"tokenizer-{objective}: {kind}, {len(tokenizer)} tokens -> {folder}")
    for arm in arms:
        if arm.runner == "hftk":
            continue
        folder = work / "configs" / arm.family
        if not (folder / "config.json").is_file():
            hf_config(arm.family, shape, load_tokenizer(str(work / f"tokenizer-{arm.objective}"))).save_pretrained(folder)


def parameter_counts(work: Path, arms: list[Arm], shape: Shape) -> dict[str, int]:
    """Every arm's model built from its config (random weights): the parameters each trains."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    import hftk  # noqa: F401  (registers hftk's model types)
    from hftk.data.tokenizer import load_tokenizer
    from hftk.models import MODEL_TYPES
    from hftk.recipe import PretrainRecipe, load_recipe

    counts = {}
    for arm in arms:
        auto = AutoModelForMaskedLM if arm.objective == "mlm" else AutoModelForCausalLM
        with torch.device("meta"):
            if arm.runner == "hftk":
                name = "pretrain-default" if arm.objective == "mlm" else "pretrain-gpt"
                recipe = load_recipe(PretrainRecipe, name, hftk_overrides(shape))
                tokenizer = load_tokenizer(str(work / f"tokenizer-{arm.objective}"))
                fields = dict(recipe.model.config, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
                model = auto.from_config(MODEL_TYPES[recipe.model.type](**fields))
            else:
                model = auto.from_config(AutoConfig.from_pretrained(work / "configs" / arm.family))
        counts[arm.name] = model.num_parameters()
    return counts


def check_parameter_counts(counts: dict[str, int], arms: list[Arm], log, strict: bool = True) -> None:
    """Print every arm's parameters against hftk's; outside +-2 % stops the benchmark (`strict`) or is flagged."""
    for objective in sorted({arm.objective for arm in arms}):
        ours = next((counts[a.name] for a in arms if a.objective == objective and a.runner == "hftk"), None)
        for arm in (a for a in arms if a.objective == objective):
            ratio = counts[arm.name] / ours if ours else float("nan")
            flag = "" if ours is None or abs(ratio - 1) <= 0.02 else "   <-- more than 2 % from hftk's"
            log(f"  {arm.name:22s} {counts[arm.name] / 1e6:7.3f} M parameters ({ratio:.3f} x hftk's){flag}")
            if flag and strict:
                raise SystemExit(f"{arm.name}: parameter count {ratio:.3f} x hftk's, outside +-2 %: fix its config in hf_config")


# ---------------------------------------------------------------------------------------------
# Phases 2-3: run the arms concurrently
# ---------------------------------------------------------------------------------------------


def arm_command(work: Path, arm: Arm, shape: Shape, steps: int, save_steps: int, out: Path) -> list[str]:
    data, tokenizer = work / "data", work / f"tokenizer-{arm.objective}"
    if arm.runner == "hftk":
        recipe = "pretrain-default" if arm.objective == "mlm" else "pretrain-gpt"
        sets = [
            *hftk_overrides(shape), f"tokenizer.name_or_path={tokenizer}", f"data.train_files=[{data / 'train.txt'}]",
            f"data.validation_files=[{data / 'valid.txt'}]", f"training.max_steps={steps}", "training.num_threads=1",
            f"training.save_steps={save_steps}", "training.save_total_limit=1000", "training.eval_steps=null",
            "training.report_to=[]",
        ]  # fmt: skip
        command = [sys.executable, "-m", "hftk", "pretrain", recipe, "-o", str(out), "--overwrite"]
        return command + [part for item in sets for part in ("--set", item)]
    script = "run_mlm.py" if arm.runner == "run_mlm" else "run_clm.py"
    command = [
        sys.executable, str(EXAMPLES / "run_example.py"), script, "--output_dir", str(out),
        "--config_name", str(work / "configs" / arm.family), "--tokenizer_name", str(tokenizer),
        "--train_file", str(data / "train.txt"), "--validation_file", str(data / "valid.txt"),
        "--do_train", "--max_steps", str(steps), "--learning_rate", f"{arm.learning_rate:g}",
        "--lr_scheduler_type", "linear", "--warmup_steps", "0.06",  # hftk's schedule (a float: a ratio)
        "--per_device_train_batch_size", str(shape.batch), "--seed", "42", "--use_cpu",
        "--dataloader_num_workers", "0", "--report_to", "none", "--logging_steps", "10",
        "--save_strategy", "steps", "--save_steps", str(save_steps), "--save_only_model",
        "--preprocessing_num_workers", "1",
    ]  # fmt: skip
    if arm.runner == "run_mlm":
        command += ["--max_seq_length", str(shape.block), "--mlm_probability", str(arm.mlm_probability)]
    else:
        command += ["--block_size", str(shape.block)]
    return command


def arm_env(work: Path, arm: Arm) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",  # one thread each (Trainer has no thread option; hftk also gets num_threads=1)
        "MKL_NUM_THREADS": "1",
        "HF_DATASETS_CACHE": str(work / "cache" / arm.name),
        "TQDM_DISABLE": "1",
    }


def run_concurrently(work: Path, arms: list[Arm], commands: dict[str, list[str]], folders: dict[str, Path], log) -> dict[str, float]:
    """Start every arm at once; return each arm's wall seconds. A failing arm stops the benchmark."""
    processes, started, finished = {}, {}, {}
    for arm in arms:
        folders[arm.name].parent.mkdir(parents=True, exist_ok=True)
        log_file = open(folders[arm.name].with_suffix(".log"), "w")  # noqa: SIM115  (closed with the process)
        started[arm.name] = time.perf_counter()
        processes[arm.name] = (subprocess.Popen(commands[arm.name], env=arm_env(work, arm), stdout=log_file, stderr=subprocess.STDOUT), log_file)
    while len(finished) < len(processes):
        for name, (process, log_file) in processes.items():
            if name not in finished and process.poll() is not None:
                finished[name] = time.perf_counter() - started[name]
                log_file.close()
                if process.returncode != 0:
                    for other, _ in processes.values():
                        if other.poll() is None:
                            other.terminate()
                    raise SystemExit(f"{name} failed (exit {process.returncode}): see {folders[name].with_suffix('.log')}")
                log(f"  {name} finished in {finished[name] / 60:.1f} min")
        time.sleep(2)
    return finished


def training_seconds(arm: Arm, folder: Path) -> tuple[int, float]:
    """(steps, seconds in the training loop) as the arm itself reports them (not start-up, not data preparation)."""
    if arm.runner == "hftk":
        metrics = json.loads((folder / "metrics.json").read_text())
        return metrics["train_steps"], metrics["train_runtime_seconds"]
    results = json.loads((folder / "train_results.json").read_text())
    state = json.loads((folder / "trainer_state.json").read_text())
    return state["global_step"], results["train_runtime"]


def saved_checkpoints(arm: Arm, folder: Path) -> list[tuple[int, Path]]:
    """(step, loadable model folder) of every checkpoint the arm saved while training, by step."""
    if arm.runner == "hftk":
        found = [(int(path.name.split("-")[1]), path / "model") for path in (folder / "checkpoints").glob("step-*")]
    else:
        found = [(int(path.name.split("-")[1]), path) for path in folder.glob("checkpoint-*")]
    return sorted(found)


def steady_seconds_per_step(arm: Arm, folder: Path) -> float:
    """Seconds per step between the first and the last checkpoint, from their weights' file times.

    The loop's steady pace, the same way for hftk and Trainer: a short run's own runtime would
    spread start-up, data loading and first-step costs over its few steps (5 steps of a tiny model
    once read 3.6x slower for Trainer than hftk that way). Falls back to the reported runtime.
    """
    saved = saved_checkpoints(arm, folder)
    if len(saved) < 2:
        steps, seconds = training_seconds(arm, folder)
        return seconds / steps
    (first, first_path), (last, last_path) = saved[0], saved[-1]
    return ((last_path / "model.safetensors").stat().st_mtime - (first_path / "model.safetensors").stat().st_mtime) / (last - first)


def calibrate(work: Path, objective: str, arms: list[Arm], shape: Shape, steps: int, log) -> dict[str, float]:
    """Seconds per training step of each arm, all arms running at once (the load the real run will see)."""
    path = work / f"calibration-{objective}.json"
    if path.is_file():
        return json.loads(path.read_text())
    folders = {arm.name: work / "calibration" / arm.name for arm in arms}
    save_every = max(1, steps // 4)  # the pace is read between the first and the last checkpoint
    commands = {arm.name: arm_command(work, arm, shape, steps, save_every, folders[arm.name]) for arm in arms}
    log(f"calibrating: {len(arms)} arms concurrently, {steps} steps each")
    run_concurrently(work, arms, commands, folders, log)
    per_step = {}
    for arm in arms:
        per_step[arm.name] = steady_seconds_per_step(arm, folders[arm.name])
        log(f"  {arm.name:22s} {per_step[arm.name]:.3f} s/step")
    path.write_text(json.dumps(per_step, indent=1))
    shutil.rmtree(work / "calibration", ignore_errors=True)
    return per_step


def pretrain_all(work: Path, arms: list[Arm], shape: Shape, steps: dict[str, int], points: int, log) -> None:
    todo = [arm for arm in arms if not (work / "pretrain" / arm.name / "done.json").is_file()]
    if not todo:
        return
    folders = {arm.name: work / "pretrain" / arm.name for arm in todo}
    commands = {
        arm.name: arm_command(work, arm, shape, steps[arm.name], max(1, math.ceil(steps[arm.name] / points)), folders[arm.name])
        for arm in todo
    }
    log(f"pretraining: {len(todo)} arms concurrently: " + ", ".join(f"{a.name} {steps[a.name]} steps" for a in todo))
    walls = run_concurrently(work, todo, commands, folders, log)
    for arm in todo:
        done, seconds = training_seconds(arm, folders[arm.name])
        record = {"steps": done, "train_seconds": seconds, "wall_seconds": walls[arm.name], "seconds_per_step": steady_seconds_per_step(arm, folders[arm.name])}
        (folders[arm.name] / "done.json").write_text(json.dumps(record, indent=1))


# ---------------------------------------------------------------------------------------------
# Phase 4: one evaluator
# ---------------------------------------------------------------------------------------------


def checkpoints(arm: Arm, folder: Path) -> list[tuple[int, Path]]:
    """(step, loadable model folder) of every saved checkpoint and the final model, by step."""
    found = dict(saved_checkpoints(arm, folder))
    found[json.loads((folder / "done.json").read_text())["steps"]] = folder
    return sorted(found.items())


def evaluation_blocks(work: Path, objective: str, shape: Shape, max_blocks: int | None):
    """The held-out blocks every arm is scored on, and (MLM) the corrupted inputs and labels, fixed once."""
    import datasets
    import torch

    from hftk.data.masking import mask_tokens
    from hftk.data.packing import tokenize_and_pack
    from hftk.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(work / f"tokenizer-{objective}"))
    lines = (work / "data" / "valid.txt").read_text().splitlines()
    packed = tokenize_and_pack(datasets.Dataset.from_dict({"text": lines}), tokenizer, shape.block, add_special_tokens=objective == "mlm")
    ids = torch.tensor(packed["input_ids"][:max_blocks], dtype=torch.long)
    if objective == "clm":
        return ids, ids
    generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
    masked, labels = mask_tokens(
        ids, probability=EVAL_MASK_PROBABILITY, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
        special_token_ids=tokenizer.all_special_ids, generator=generator,
    )  # fmt: skip
    return masked, labels


def model_loss(folder: Path, objective: str, inputs, labels, batch_size: int = 32) -> float:
    """Mean cross-entropy over the targets: masked positions (MLM) or every next token (CLM)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    import hftk  # noqa: F401  (registers hftk's model types)

    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    model = auto.from_pretrained(folder).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x, y = inputs[start : start + batch_size], labels[start : start + batch_size]
            logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits.float()
            if objective == "clm":
                logits, y = logits[:, :-1], y[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100, reduction="sum").item()
            count += int((y != -100).sum())
    return total / count


def evaluate_all(work: Path, arms: list[Arm], shape: Shape, max_blocks: int | None, log) -> dict:
    """{arm: [(step, minutes, loss)]}: every checkpoint through the one evaluator (cached in curves.json)."""
    from hftk.data.tokenizer import load_tokenizer

    path = work / "curves.json"
    curves = json.loads(path.read_text()) if path.is_file() else {}
    for objective in sorted({arm.objective for arm in arms}):
        todo = [arm for arm in arms if arm.objective == objective and arm.name not in curves]
        if not todo:
            continue
        inputs, labels = evaluation_blocks(work, objective, shape, max_blocks)
        uniform_loss = math.log(len(load_tokenizer(str(work / f"tokenizer-{objective}"))))
        log(f"evaluating {objective}: {len(inputs)} held-out blocks, {int((labels != -100).sum())} targets")
        for arm in todo:
            folder = work / "pretrain" / arm.name
            done = json.loads((folder / "done.json").read_text())
            per_step_minutes = done.get("seconds_per_step", done["train_seconds"] / done["steps"]) / 60
            curve = [(0, 0.0, uniform_loss)]  # every arm starts from a uniform guess
            for step, model_folder in checkpoints(arm, folder):
                curve.append((step, step * per_step_minutes, model_loss(model_folder, objective, inputs, labels)))
                log(f"  {arm.name:22s} step {step:5d} {curve[-1][1]:6.1f} min perplexity {math.exp(curve[-1][2]):9.1f}")
            curves[arm.name] = curve
            path.write_text(json.dumps(curves, indent=1))
    return curves


# ---------------------------------------------------------------------------------------------
# Phase 5: identical fine-tuning with hftk
# ---------------------------------------------------------------------------------------------

TASKS = {  # name: (hftk task, data folder, score key, objectives it applies to, extra --set)
    "wnut16": ("ner", "ner/wnut16", "eval_f1", ("mlm",), []),
    "fine_foods": ("classification", "classification/fine_foods", "eval_accuracy", ("mlm", "clm"), ["data.max_train_samples=1000"]),
}


SMOKE_FINETUNE = ["data.max_train_samples=200", "training.num_train_epochs=1", "training.min_steps=null"]


def finetune_all(work: Path, arms: list[Arm], seeds: list[int], tasks: list[str], log, extra_sets: list[str] = ()) -> dict:
    """{arm: {task: [score per seed]}}: each final model through the same `hftk finetune` command."""
    scores: dict = {}
    for arm in arms:
        for task_name in tasks:
            task, data, key, objectives, extra = TASKS[task_name]
            if arm.objective not in objectives:
                continue
            for seed in seeds:
                out = work / "finetune" / task_name / arm.name / f"seed-{seed}"
                if not (out / "metrics.json").is_file():
                    sets = [
                        f"training.seed={seed}", f"data.train_sample_seed={seed}", f"training.learning_rate={FINETUNE_LR}",
                        f"data.train_file={SHARED / data / 'train.jsonl'}", f"data.validation_file={SHARED / data / 'test.jsonl'}",
                        "data.max_seq_length=64", "training.num_threads=1", "training.save_steps=null",
                        "training.report_to=[]", "training.eval_steps=100000", *extra, *extra_sets,
                    ]  # fmt: skip
                    command = [sys.executable, "-m", "hftk", "finetune", task, "--model", str(work / "pretrain" / arm.name), "-o", str(out), "--overwrite"]
                    command += [part for item in sets for part in ("--set", item)]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with open(out.with_suffix(".log"), "w") as log_file:
                        done = subprocess.run(command, env=arm_env(work, arm), stdout=log_file, stderr=subprocess.STDOUT)
                    if done.returncode != 0:
                        raise SystemExit(f"fine-tuning failed: see {out.with_suffix('.log')}")
                score = json.loads((out / "metrics.json").read_text())[key]
                scores.setdefault(arm.name, {}).setdefault(task_name, []).append(score)
                log(f"  {task_name:10s} {arm.name:22s} seed {seed}: {key} {score:.3f}")
    return scores


# ---------------------------------------------------------------------------------------------
# Phase 6: report
# ---------------------------------------------------------------------------------------------


def minutes_to_reach(curve: list, target_loss: float) -> float | None:
    """First minute at which the curve's loss reaches `target_loss` (linear between checkpoints); None if never."""
    for (_, m0, l0), (_, m1, l1) in zip(curve, curve[1:]):
        if l1 <= target_loss:
            return m0 + (m1 - m0) * (l0 - target_loss) / (l0 - l1) if l0 > target_loss else m0
    return None


def best_of_family(arms: list[Arm], curves: dict) -> list[Arm]:
    """Per family, the learning rate with the lowest final loss (the issue: each HF arm at its better LR)."""
    best: dict[str, Arm] = {}
    for arm in arms:
        if arm.family not in best or curves[arm.name][-1][2] < curves[best[arm.family].name][-1][2]:
            best[arm.family] = arm
    return [best[a.family] for a in arms if best[a.family] is a]


def plot_curves(work: Path, objective: str, arms: list[Arm], curves: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for arm in arms:
        points = curves[arm.name][1:]
        axis.plot([m for _, m, _ in points], [math.exp(loss) for _, _, loss in points], marker="o", label=arm.name)
    axis.set_yscale("log")
    axis.set_xlabel("minutes of training (one thread, all arms at once)")
    axis.set_ylabel("validation perplexity (one evaluator)")
    axis.set_title(f"time to quality: {objective}")
    axis.legend()
    axis.grid(True, which="both", alpha=0.3)
    path = work / f"curves-{objective}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def report(work: Path, arms: list[Arm], curves: dict, scores: dict, budget_minutes: float, header: list[str]) -> str:
    lines = [*header, ""]
    for objective in sorted({arm.objective for arm in arms}):
        group = [arm for arm in arms if arm.objective == objective]
        shown = best_of_family(group, curves)
        lines += [f"### {objective.upper()} (budget {budget_minutes:g} min per arm)", ""]
        lines += ["| arm | LR | steps | s/step | training min (loop's own) | final perplexity | " + " | ".join(f"min to reach {a.name}'s" for a in shown) + " |"]
        lines += ["|---" * (6 + len(shown)) + "|"]
        for arm in shown:
            curve = curves[arm.name]
            reach = []
            for other in shown:
                minutes = minutes_to_reach(curve, curves[other.name][-1][2])
                reach.append("—" if other is arm else ("never" if minutes is None else f"{minutes:.1f} ({minutes / curves[other.name][-1][1]:.2f} W)"))
            lr = "recipe" if arm.learning_rate is None else f"{arm.learning_rate:g}"
            done = json.loads((work / "pretrain" / arm.name / "done.json").read_text())
            pace = done.get("seconds_per_step", done["train_seconds"] / done["steps"])
            lines.append(
                f"| {arm.name} | {lr} | {curve[-1][0]} | {pace:.2f} | {curve[-1][1]:.1f} ({done['train_seconds'] / 60:.1f}) | "
                f"{math.exp(curve[-1][2]):.1f} | " + " | ".join(reach) + " |"
            )
        dropped = [a.name for a in group if a not in shown]
        if dropped:
            lines += ["", "Worse learning rate, not shown: " + ", ".join(f"{n} ({math.exp(curves[n][-1][2]):.1f})" for n in dropped)]
        lines += ["", f"Plot: `{plot_curves(work, objective, group, curves).name}` (every arm).", ""]
        tasks = sorted({task for arm in shown for task in scores.get(arm.name, {})})
        if tasks:
            lines += ["| arm | " + " | ".join(tasks) + " |", "|---" * (1 + len(tasks)) + "|"]
            for arm in shown:
                cells = []
                for task in tasks:
                    values = scores.get(arm.name, {}).get(task)
                    if not values:
                        cells.append("—")
                    elif len(values) == 1:
                        cells.append(f"{values[0]:.3f} (n=1)")
                    else:
                        cells.append(f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (n={len(values)})")
                lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
            lines.append("")
    text = "\n".join(lines)
    (work / "report.md").write_text(text + "\n")
    return text


def machine_lines(command: str) -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return [
        f"- command: `{command}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load at the end: `{load}`",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; commit {commit}",
    ]


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=39.0, help="training wall clock per arm (the issue: 39)")
    parser.add_argument("--objectives", nargs="+", default=["mlm", "clm"], choices=["mlm", "clm"])
    parser.add_argument("--arms", nargs="*", default=[], choices=list(BASE_ARMS), help="default: every arm of the objectives")
    parser.add_argument("--hf-lrs", nargs="+", type=float, default=[5e-4, 1e-3], help="one run per LR for each HF arm")
    parser.add_argument("--steps", type=int, default=None, help="fixed steps for every arm instead of calibrating to the budget")
    parser.add_argument("--calibration-steps", type=int, default=20)
    parser.add_argument("--points", type=int, default=8, help="checkpoints per arm on the perplexity curve")
    parser.add_argument("--eval-blocks", type=int, default=None, help="held-out blocks scored (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 1-minute budget, one LR, one seed: checks the pipeline")
    parser.add_argument("--dry-run", action="store_true", help="prepare and print the plan (shapes, parameters, commands); train nothing")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "time-to-quality")
    args = parser.parse_args(argv)
    if args.smoke:
        defaults = dict(budget_minutes=1.0, hf_lrs=[1e-3], calibration_steps=5, points=3, eval_blocks=16, seeds=[1])
        for key, value in defaults.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shape = SMOKE if args.smoke else FULL
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/time_to_quality.py", *(argv if argv is not None else sys.argv[1:])])

    def log(message: str) -> None:
        print(message, flush=True)
        with open(work / "progress.log", "a") as progress:
            progress.write(f"{datetime.datetime.now():%H:%M:%S} {message}\n")

    arms = make_arms(args.arms, args.objectives, args.hf_lrs)
    log(f"shape: {shape}; arms: {', '.join(a.name for a in arms)}")
    prepare(work, arms, shape, log)
    counts = parameter_counts(work, arms, shape)
    check_parameter_counts(counts, arms, log, strict=shape == FULL)
    if args.dry_run:
        for arm in arms:
            log(f"{arm.name}: " + " ".join(arm_command(work, arm, shape, 100, 13, work / "pretrain" / arm.name)))
        return
    for objective in args.objectives:
        group = [arm for arm in arms if arm.objective == objective]
        if not group:
            continue
        if args.steps:
            steps = {arm.name: args.steps for arm in group}
        else:
            per_step = calibrate(work, objective, group, shape, args.calibration_steps, log)
            steps = {name: max(1, int(args.budget_minutes * 60 / seconds)) for name, seconds in per_step.items()}
        pretrain_all(work, group, shape, steps, args.points, log)
    curves = evaluate_all(work, arms, shape, args.eval_blocks, log)
    scores = {} if args.skip_finetune else finetune_all(work, arms, args.seeds, args.tasks, log, SMOKE_FINETUNE if args.smoke else [])
    header = ["## Time to quality", "", *machine_lines(command), "- parameters: " + ", ".join(f"{n} {c / 1e6:.2f} M" for n, c in counts.items())]
    print(report(work, arms, curves, scores, args.budget_minutes, header))


if __name__ == "__main__":
    main()
