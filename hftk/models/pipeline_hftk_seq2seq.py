"""`pipeline("translation" | "summarization" | "text2text-generation")` for hftk_seq2seq folders.

transformers 5 removed these three pipelines (`pipeline("translation")` raises KeyError for
every model, BART included). A model's config may still name its own pipelines
(`custom_pipelines`), which `transformers.pipeline` resolves before the removed-task check: an
hftk_seq2seq folder names this class for the three tasks, so

    pipeline("translation", model="runs/mt", trust_remote_code=True)

tokenizes, generates and decodes as the removed pipelines did. Hand-written because nothing in
transformers 5.23 does text-in, encoder-decoder-generate, text-out any more; the generation
arguments go through `Pipeline._prepare_generate_kwargs`, as in transformers' own pipelines.

Self-contained on purpose: `save_pretrained` copies this file next to the weights.
"""

from transformers import Pipeline

OUTPUT_KEYS = {"translation": "translation_text", "summarization": "summary_text"}
TASKS = ("translation", "summarization", "text2text-generation")


class HftkSeq2SeqPipeline(Pipeline):
    """Text in, generated text out: `{"translation_text" | "summary_text" | "generated_text": ...}`.

    `prefix` (a call or init argument, else `config.prefix`) is put before each input, as T5-style
    task prefixes ("translate English to Spanish: ") are.
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(self, prefix: str | None = None, truncation: bool | None = None, **generate_kwargs):
        preprocess = {}
        if prefix is not None:
            preprocess["prefix"] = prefix
        if truncation is not None:
            preprocess["truncation"] = truncation
        return preprocess, generate_kwargs, {}

    def preprocess(self, text: str, prefix: str | None = None, truncation: bool = True):
        prefix = prefix if prefix is not None else (self.prefix or "")
        return self.tokenizer(prefix + text, return_tensors="pt", truncation=truncation)

    def _forward(self, model_inputs, **generate_kwargs):
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        output = self.model.generate(
            input_ids=model_inputs["input_ids"], attention_mask=model_inputs.get("attention_mask"), **generate_kwargs
        )
        sequences = output.sequences if hasattr(output, "sequences") else output
        return {"output_ids": sequences}

    def postprocess(self, model_outputs):
        key = OUTPUT_KEYS.get(self.task, "generated_text")
        return [{key: self.tokenizer.decode(ids, skip_special_tokens=True)} for ids in model_outputs["output_ids"]]


CUSTOM_PIPELINES = {
    task: {"impl": "pipeline_hftk_seq2seq.HftkSeq2SeqPipeline", "pt": ["AutoModelForSeq2SeqLM"], "type": "text"}
    for task in TASKS
}
