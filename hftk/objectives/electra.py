"""ELECTRA (Clark et al., 2020): replaced-token detection, learning from every token instead of 15 %.

A small generator (an `hftk_bert` masked LM, a quarter of the width by default) fills the
masked positions with tokens SAMPLED from its predictions; the discriminator (the model the
run saves, `HftkBertForPreTraining`) tells for every token whether it is the original or a
replacement. Both train jointly: loss = generator MLM loss + λ · discriminator loss, λ = 50.

- Token, position and token-type embeddings are one module, shared (the paper's setting); a
  narrower generator reads them through a projection (`embedding_size`, as ELECTRA's code).
- No gradient flows through the sampling: the discriminator's loss reaches the generator only
  through the shared embeddings.
- A sample equal to the original token counts as original (label 0).
- The generator predicts on masked positions only (sparse prediction), as MLM does, and its
  head's loss and samples come from one chunked pass that never holds all the logits (as MLM's
  fused loss).
- Sampling is inverse-CDF with uniforms drawn in `prepare` from each row's masking generator,
  seeded from (seed, the sample's position in the run): a resumed run samples what the
  uninterrupted one did, and N processes what one process of the same global batch does.

transformers ships ELECTRA's models but no pretraining step (its ELECTRA example was never
ported), so the joint module and the sampling are written here.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers.utils import ModelOutput

from hftk.errors import HftkError
from hftk.models import HftkBertConfig, HftkBertForMaskedLM, HftkBertForPreTraining
from hftk.objectives.mlm import MaskedLanguageModelling
from hftk.recipe import ElectraSection, PretrainRecipe, resolve_generator_sizes
from hftk.training.outputs import write_model_folder
from hftk.training.checkpoint import load_model_weights

GENERATOR_FOLDER = "generator"
DISCRIMINATOR_PREFIX, GENERATOR_PREFIX = "discriminator.", "generator."
# Fields of the discriminator's config the generator does not copy: sizes, and what a saved
# config carries about its own class.
_NOT_COPIED = {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "embedding_size",
               "architectures", "auto_map", "fused_lm_loss", "transformers_version", "model_type"}


def generator_config(section: ElectraSection, discriminator: HftkBertConfig) -> HftkBertConfig:
    """The generator's config: the discriminator's, narrower, reading the discriminator's embeddings."""
    sizes = resolve_generator_sizes(section, discriminator)
    fields = {key: value for key, value in discriminator.to_dict().items() if key not in _NOT_COPIED}
    return HftkBertConfig(
        **fields,
        hidden_size=sizes.generator_hidden_size,
        num_hidden_layers=sizes.generator_num_hidden_layers,
        num_attention_heads=sizes.generator_num_attention_heads,
        intermediate_size=sizes.generator_intermediate_size,
        embedding_size=discriminator.embedding_size or discriminator.hidden_size,
    )


def sample_tokens(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    disallowed: torch.Tensor,
    probabilities: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row of `logits`, drawn from softmax(logits / temperature) by inverse CDF with `uniforms` in [0, 1).

    `disallowed` ids (special tokens, which never are originals at masked positions) get probability 0.
    `probabilities`: that softmax where the caller has it already (left unchanged).
    """
    if probabilities is None:
        logits = logits.detach()
        dtype = torch.promote_types(logits.dtype, torch.float32)
        probabilities = torch.softmax(logits if temperature == 1.0 else logits / temperature, dim=-1, dtype=dtype)
    else:
        probabilities = probabilities.clone()
    probabilities[:, disallowed] = 0.0
    cdf = probabilities.cumsum_(dim=-1)
    threshold = uniforms.to(cdf.device, cdf.dtype)[:, None] * cdf[:, -1:]
    # right=True: the first id whose cumulative probability exceeds the draw; ids of probability 0 never are.
    return torch.searchsorted(cdf, threshold, right=True).squeeze(1).clamp(max=logits.shape[-1] - 1)


class _GeneratorLossAndSample(torch.autograd.Function):
    """The generator head's summed cross-entropy and one sampled token per row, `chunk_rows` rows at a time.

    MLM's fused loss (`linear_cross_entropy`) never holds the (masked rows, vocab) logits; ELECTRA
    also needs a sample from each row's softmax, so this computes both from the same chunk: the
    softmax turns into the gradient in place (softmax - one_hot), and the samples are drawn from
    it first by inverse CDF. The gradients are complete when forward returns; backward scales them.
    Matmuls run in the autocast dtype, softmax and accumulation in float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, uniforms, disallowed, temperature, denominator, chunk_rows):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        accumulate = torch.promote_types(dtype, torch.float32)  # float32 softmax, or float64 if given
        with torch.autocast(device, enabled=False):
            h, w, b = hidden.to(dtype), weight.to(dtype), bias.to(dtype)
            grad_h = torch.empty_like(hidden)
            grad_w = torch.zeros(weight.shape, dtype=accumulate, device=weight.device)
            grad_b = torch.zeros(bias.shape, dtype=accumulate, device=bias.device)
            total = torch.zeros((), dtype=accumulate, device=hidden.device)
            samples = torch.empty(len(labels), dtype=torch.long, device=hidden.device)
            for start in range(0, len(labels), chunk_rows):
                rows = slice(start, start + chunk_rows)
                h_chunk, y = h[rows], labels[rows]
                index = torch.arange(len(y), device=y.device)
                logits = torch.addmm(b, h_chunk, w.t()).to(accumulate)
                total += (logits.logsumexp(-1) - logits[index, y]).sum()
                probs = torch.softmax(logits, -1) if temperature == 1.0 else None
                samples[rows] = sample_tokens(logits, uniforms[rows], temperature, disallowed, probs)
                if probs is None:
                    probs = torch.softmax(logits, -1)
                probs[index, y] -= 1.0  # d(loss)/d(logits)
                grad = probs.to(dtype)
                grad_h[rows] = grad @ w
                grad_w += (grad.t() @ h_chunk).to(accumulate)
                grad_b += probs.sum(0)
        grad_h.div_(denominator)
        ctx.save_for_backward(grad_h, (grad_w / denominator).to(weight.dtype), (grad_b / denominator).to(bias.dtype))
        ctx.mark_non_differentiable(samples)
        return total / denominator, samples

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output, grad_samples):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return grad_h * grad_output, grad_w * grad_output, grad_b * grad_output, None, None, None, None, None, None


def generator_loss_and_sample(
    hidden: torch.Tensor,
    decoder: nn.Linear,
    labels: torch.Tensor,
    uniforms: torch.Tensor,
    disallowed: torch.Tensor,
    temperature: float = 1.0,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy of `decoder(hidden)` against `labels`, one token sampled per row), without the full logits."""
    denominator = num_items_in_batch if num_items_in_batch is not None else len(labels)
    denominator = denominator.to(hidden.device, torch.float32) if torch.is_tensor(denominator) else float(denominator or "nan")
    chunk_rows = max(64, 2**24 // decoder.weight.shape[0])  # about 16M logits (64 MB in float32) per chunk
    return _GeneratorLossAndSample.apply(
        hidden, decoder.weight, decoder.bias, labels, uniforms.to(hidden.device), disallowed, temperature, denominator, chunk_rows
    )


def replace_masked(input_ids: torch.Tensor, labels: torch.Tensor, sampled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's input and labels: originals with the samples at masked positions; 1 where a token differs.

    `input_ids` is the generator's (masked) input, `labels` the originals at masked positions
    (-100 elsewhere), `sampled` one token per masked position in row-major order.
    """
    masked = labels != -100
    original = torch.where(masked, labels, input_ids)
    replaced = original.clone()
    replaced[masked] = sampled.to(replaced.dtype)
    return replaced, (replaced != original).long()


@dataclass
class ElectraOutput(ModelOutput):
    """The joint loss and its parts (each a mean: generator over masked tokens, discriminator over all tokens)."""

    loss: torch.Tensor | None = None
    generator_loss: torch.Tensor | None = None
    discriminator_loss: torch.Tensor | None = None
    discriminator_logits: torch.Tensor | None = None
    replaced_labels: torch.Tensor | None = None
    discriminator_input_ids: torch.Tensor | None = None


class ElectraPretrainingModel(nn.Module):
    """Generator and discriminator trained as one module (one optimizer, one DDP/FSDP wrapper)."""

    _no_split_modules = ["Block"]  # FSDP wraps the blocks of both
    supports_gradient_checkpointing = True

    def __init__(
        self,
        discriminator: HftkBertForPreTraining,
        generator: HftkBertForMaskedLM,
        discriminator_weight: float = 50.0,
        temperature: float = 1.0,
        disallowed_ids: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.discriminator, self.generator = discriminator, generator
        self.tie_weights()
        self.discriminator_weight, self.temperature = discriminator_weight, temperature
        self.register_buffer("disallowed_ids", torch.tensor(disallowed_ids or [], dtype=torch.long), persistent=False)

    def tie_weights(self) -> None:
        """Share the discriminator's embeddings with the generator (the paper's setting), its decoder included.

        Accelerate's FSDP2 preparation calls this again after moving the module to the meta device.
        """
        self.generator.model.encoder.embeddings = self.discriminator.model.encoder.embeddings
        self.generator.tie_weights()

    def num_parameters(self) -> int:
        """The saved model's (the discriminator's) parameters."""
        return self.discriminator.num_parameters()

    def activation_checkpointing_enable(self, **kwargs) -> None:
        self.discriminator.activation_checkpointing_enable(**kwargs)
        self.generator.activation_checkpointing_enable(**kwargs)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        sample_uniforms: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        num_tokens_in_batch: int | None = None,
    ) -> ElectraOutput:
        """`num_items_in_batch` / `num_tokens_in_batch`: the global masked / token counts the two losses are divided by."""
        generator = self.generator
        hidden = generator.model(input_ids, attention_mask, token_type_ids).last_hidden_state
        masked = labels != -100
        # Sparse prediction: the head runs on the masked rows only (row-major order), fused with the sampling.
        generator_loss, sampled = generator_loss_and_sample(
            generator.head.features(hidden[masked]),
            generator.head.decoder,
            labels[masked],
            sample_uniforms,
            self.disallowed_ids,
            self.temperature,
            num_items_in_batch,
        )
        with torch.no_grad():
            replaced, replaced_labels = replace_masked(input_ids, labels, sampled)
        detected = self.discriminator(
            input_ids=replaced,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            labels=replaced_labels,
            num_items_in_batch=num_tokens_in_batch,
        )
        return ElectraOutput(
            loss=generator_loss + self.discriminator_weight * detected.loss,
            generator_loss=generator_loss,
            discriminator_loss=detected.loss,
            discriminator_logits=detected.logits,
            replaced_labels=replaced_labels,
            discriminator_input_ids=replaced,
        )


class ReplacedTokenDetection(MaskedLanguageModelling):
    """`objective: electra`: MLM's reproducible masking, plus the uniforms the generator's samples are drawn with.

    ELECTRA's masking: of the selected tokens 85 % become [MASK] and 15 % stay (no random
    tokens: the generator supplies the replacements).
    """

    mask_replace_prob, random_replace_prob = 0.85, 0.0

    def __init__(self, recipe: PretrainRecipe, tokenizer, accelerator) -> None:
        super().__init__(recipe, tokenizer, accelerator, sparse=False)
        self.section = recipe.electra or ElectraSection()
        self.accelerator = accelerator
        # Every training micro-batch of every process holds the same number of tokens (packed
        # blocks, drop_last): the discriminator loss's global denominator is known per batch.
        self.micro_batches_per_step = recipe.training.gradient_accumulation_steps * accelerator.num_processes

    def prepare(self, batch: dict, index: int, evaluation: bool = False) -> dict:
        generators = self.seeds.generators(index, len(batch["input_ids"]), evaluation)
        prepared = self.mask(batch["input_ids"], generators)
        # Each row's uniforms continue its masking stream, in the row-major order of the masked positions.
        masked_per_row = (prepared["labels"] != -100).sum(dim=1).tolist()
        uniforms = torch.cat([torch.rand(int(n), generator=g) for n, g in zip(masked_per_row, generators)])
        prepared["sample_uniforms"] = uniforms.to(prepared["input_ids"].device)
        if not evaluation:
            prepared["num_tokens_in_batch"] = prepared["input_ids"].numel() * self.micro_batches_per_step
        return prepared

    def training_model(self, model: nn.Module) -> ElectraPretrainingModel:
        config = model.config
        try:
            generator = HftkBertForMaskedLM(generator_config(self.section, config))
        except ValueError as error:
            raise HftkError(str(error).splitlines()[0]) from None
        generator.to(model.device)
        self.accelerator.print(
            f"ELECTRA generator: hidden_size {generator.config.hidden_size}, {generator.config.num_hidden_layers} layers, "
            f"{generator.num_parameters() / 1e6:.2f} M parameters (embeddings shared with the discriminator)"
        )
        return ElectraPretrainingModel(
            model, generator, self.section.discriminator_weight, self.section.temperature, self.special_token_ids
        )

    def save_model(self, model: ElectraPretrainingModel, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
        """The discriminator in `folder`, the generator in `folder/generator`, each a loadable folder."""
        discriminator_state, generator_state = split_state_dict(state_dict)
        write_model_folder(model.discriminator, tokenizer, folder, discriminator_state)
        write_model_folder(model.generator, tokenizer, folder / GENERATOR_FOLDER, generator_state)

    def load_model(self, model: ElectraPretrainingModel, folder: Path) -> None:
        load_model_weights(model.generator, folder / GENERATOR_FOLDER)
        load_model_weights(model.discriminator, folder)  # last: the shared embeddings are the discriminator's

    def finish(self, model: ElectraPretrainingModel, state_dict: dict | None, tokenizer, output_dir: Path):
        """Write `generator/` (moved into place whole); the run folder's model is the discriminator."""
        discriminator_state, generator_state = split_state_dict(state_dict)
        staging, final = output_dir / f".{GENERATOR_FOLDER}.tmp", output_dir / GENERATOR_FOLDER
        shutil.rmtree(staging, ignore_errors=True)
        write_model_folder(model.generator, tokenizer, staging, generator_state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        return model.discriminator, discriminator_state

    def evaluate(self, model, eval_loader, max_batches: int | None, accelerator) -> dict[str, float]:
        """Token-weighted generator and discriminator losses and the discriminator's accuracy over the eval set."""
        model.eval()
        device = accelerator.device
        sums = torch.zeros(5, dtype=torch.float64, device=device)  # gen loss sum, masked, disc loss sum, tokens, correct
        with torch.no_grad():
            for index, batch in enumerate(eval_loader):
                if max_batches and index >= max_batches:
                    break
                batch = self.prepare(batch, index, evaluation=True)
                out = model(**batch)
                masked = (batch["labels"] != -100).sum()
                tokens = out.replaced_labels.numel()
                correct = ((out.discriminator_logits > 0).long() == out.replaced_labels).sum()
                sums += torch.stack(
                    [out.generator_loss.double() * masked, masked.double(), out.discriminator_loss.double() * tokens,
                     torch.tensor(tokens, dtype=torch.float64, device=device), correct.double()]
                )
        sums = accelerator.reduce(sums, "sum")
        generator_loss = (sums[0] / sums[1].clamp(min=1)).item()
        discriminator_loss = (sums[2] / sums[3].clamp(min=1)).item()
        weight = accelerator.unwrap_model(model).discriminator_weight
        return {
            "eval_loss": generator_loss + weight * discriminator_loss,
            "eval_generator_loss": generator_loss,
            "eval_discriminator_loss": discriminator_loss,
            "eval_discriminator_accuracy": (sums[4] / sums[3].clamp(min=1)).item(),
        }


def split_state_dict(state_dict: dict | None) -> tuple[dict | None, dict | None]:
    """The joint module's full weights (FSDP) as the discriminator's and the generator's own."""
    if state_dict is None:
        return None, None
    parts: tuple[dict, dict] = ({}, {})
    for name, tensor in state_dict.items():
        for part, prefix in zip(parts, (DISCRIMINATOR_PREFIX, GENERATOR_PREFIX)):
            if name.startswith(prefix):
                part[name[len(prefix):]] = tensor
    return parts
