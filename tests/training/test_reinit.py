"""`model.reinit_top_layers`: only the top blocks are re-drawn, with the model's own initialisation."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from hftk.errors import HftkError
from hftk.models import HftkBertConfig, HftkBertForMaskedLM
from hftk.training.reinit import check_reinit, reinit_top_layers


def loaded(model, tmp_path, auto=AutoModelForSequenceClassification):
    """A pretrained folder loaded the way fine-tuning loads it: every body tensor flagged as loaded."""
    with torch.no_grad():  # a "pretrained" body far from the initial distribution
        for parameter in model.parameters():
            parameter.fill_(0.5)
    model.save_pretrained(tmp_path)
    return auto.from_pretrained(tmp_path, num_labels=2)


@pytest.mark.parametrize("family", ["hftk_bert", "bert"])
def test_only_the_top_blocks_are_redrawn(tmp_path, family):
    if family == "hftk_bert":
        config = HftkBertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
        model = loaded(HftkBertForMaskedLM(config), tmp_path)
        blocks = model.model.encoder.layers
    else:
        config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
        model = loaded(BertForSequenceClassification(config), tmp_path)
        blocks = model.bert.encoder.layer
    torch.manual_seed(0)
    names = reinit_top_layers(model, 2)
    assert len(names) == 2 and names[-1].endswith("2") and names[0].endswith("1")
    assert all(torch.all(p == 0.5) for p in blocks[0].parameters())  # kept
    for block in blocks[1:]:
        weights = [m.weight for m in block.modules() if isinstance(m, torch.nn.Linear)]
        biases = [m.bias for m in block.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None]
        std = torch.cat([w.flatten() for w in weights]).std().item()
        assert std == pytest.approx(config.initializer_range, rel=0.15)  # drawn N(0, initializer_range)
        assert all(torch.all(b == 0) for b in biases)
        norms = [m for m in block.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert norms and all(torch.all(n.weight == 1) for n in norms)


def test_too_many_layers_is_one_line_before_work():
    config = HftkBertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
    check_reinit(config, 3)
    with pytest.raises(HftkError, match="reinit_top_layers=4 exceeds the model's 3 layers"):
        check_reinit(config, 4)
