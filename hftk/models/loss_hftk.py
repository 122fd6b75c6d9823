"""The fused LM loss: cross-entropy of a linear layer's output without materialising the logits.

A sibling of modeling_hftk.py (relative imports only), so `save_pretrained` copies it next to
the model code and `trust_remote_code=True` loads it where hftk is not installed.
PyTorch has no such kernel and transformers' LM losses take full logits, hence this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropies of `hidden @ weight.T + bias`, computed `chunk_rows` rows at a time.

    The (rows, vocab) logits never exist in full: each chunk's softmax turns into its gradient
    in place, in buffers allocated once (on CPU a fresh tensor of this size costs more in page
    faults than the softmax itself), and the gradients of hidden, weight and bias are complete
    when forward returns; backward only scales them. Under autocast the matmuls run in the
    autocast dtype, as nn.Linear would, and the softmax in float32, as transformers' LM losses
    upcast logits to.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, denominator, chunk_rows):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        accumulate = torch.promote_types(dtype, torch.float32)  # float32 softmax, or float64 if given
        with torch.autocast(device, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            rows, vocab = h.shape[0], w.shape[0]
            grad_h = torch.empty_like(hidden)
            mixed = dtype != accumulate
            # Mixed precision accumulates grad_w transposed, (hidden, vocab): that bf16 product is
            # about 1.4x faster on CPU than the (vocab, hidden) one; float32 is layout-neutral.
            grad_w = torch.zeros(weight.shape[::-1] if mixed else weight.shape, dtype=accumulate, device=weight.device)
            grad_b = torch.zeros(vocab, dtype=accumulate, device=weight.device) if bias is not None else None
            total = torch.zeros((), dtype=accumulate, device=hidden.device)
            buffer_rows = min(chunk_rows, rows)
            logits_buffer = torch.empty(buffer_rows, vocab, dtype=dtype, device=h.device)
            probs_buffer = torch.empty(buffer_rows, vocab, dtype=accumulate, device=h.device) if mixed else logits_buffer
            partial_w = torch.empty_like(grad_w, dtype=dtype) if mixed else None
            for start in range(0, rows, chunk_rows):
                h_chunk, y = h[start : start + chunk_rows], labels[start : start + chunk_rows]
                index = torch.arange(len(y), device=y.device)
                logits, probs = logits_buffer[: len(y)], probs_buffer[: len(y)]
                if b is None:
                    torch.mm(h_chunk, w.t(), out=logits)
                else:
                    torch.addmm(b, h_chunk, w.t(), out=logits)
                if mixed:
                    probs.copy_(logits)
                torch.ops.aten._softmax.out(probs, -1, False, out=probs)  # in place, row by row
                target = probs[index, y]
                loss = -target.log()
                underflow = target < 1e-30  # -log(p) lost to float32 underflow: take it from logsumexp
                if underflow.any():
                    rows_lost = F.linear(h_chunk[underflow], w, b).to(accumulate)  # rare: recompute those rows
                    loss[underflow] = rows_lost.logsumexp(-1) - rows_lost.gather(1, y[underflow, None]).squeeze(1)
                total += loss.sum()
                probs[index, y] = target - 1  # d(loss)/d(logits) = softmax - one_hot
                if grad_b is not None:
                    grad_b += probs.sum(0)
                grad = logits.copy_(probs) if mixed else probs
                if mixed:
                    grad_h[start : start + chunk_rows] = grad @ w
                    grad_w += torch.mm(h_chunk.t(), grad, out=partial_w)
                else:
                    torch.mm(grad, w, out=grad_h[start : start + chunk_rows])
                    grad_w.addmm_(grad.t(), h_chunk)
        grad_h.div_(denominator)
        grad_w = grad_w.t() if mixed else grad_w
        grad_w = grad_w.div_(denominator).to(weight.dtype).contiguous()
        grad_b = grad_b.div_(denominator).to(bias.dtype) if grad_b is not None else None
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total / denominator

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        grad_b = grad_b * grad_output if grad_b is not None else None
        return grad_h * grad_output, grad_w * grad_output, grad_b, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """`F.cross_entropy(F.linear(hidden, weight, bias), labels)` without materialising the logits.

    The LM head of a small model over a 30-50k vocabulary is most of a training step, and its
    (tokens, vocab) logits, their float32 copy and their gradient are gigabytes of memory
    traffic. Here rows with `ignore_index` are dropped first and the rest run in chunks; the
    mean is over the kept rows, or over `num_items_in_batch` (gradient accumulation) if given.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1).to(hidden.device)
    keep = labels != ignore_index
    hidden, labels = hidden[keep], labels[keep]
    denominator = num_items_in_batch if num_items_in_batch is not None else labels.numel()
    if torch.is_tensor(denominator):
        denominator = denominator.to(hidden.device, torch.float32)
    elif denominator == 0:
        denominator = float("nan")  # a mean over nothing, as F.cross_entropy gives
    if chunk_rows is None:
        chunk_rows = max(64, 2**25 // weight.shape[0])  # about 32M logits (128 MB in float32) per chunk
    return _LinearCrossEntropy.apply(hidden, weight, bias, labels, denominator, chunk_rows)


def use_fused_lm_loss(model: PreTrainedModel, labels: torch.Tensor | None) -> bool:
    """Training with labels: compute the LM loss from the hidden states and skip the logits."""
    return labels is not None and model.training and torch.is_grad_enabled() and model.config.fused_lm_loss
