"""Model construction, freezing, and checkpoint checks (masking: test_masking.py)."""

import json
import os

import pytest
import torch

from workflow_scripts.core.errors import InputError
from workflow_scripts.core.model import (
    check_checkpoint,
    classifier,
    freeze,
    geneformer_config,
    new_masked_lm,
)

MODEL = dict(hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32, hidden_act="relu",
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02,
             layer_norm_eps=1e-12)


@pytest.fixture
def checkpoint(tmp_path):
    new_masked_lm(geneformer_config(MODEL, vocab_size=50, model_input_size=32), seed=0).save_pretrained(tmp_path)
    return tmp_path


def test_geneformer_shape():
    config = geneformer_config(MODEL, vocab_size=50, model_input_size=32)
    assert (config.hidden_act, config.layer_norm_eps, config.pad_token_id) == ("relu", 1e-12, 0)
    assert config.max_position_embeddings == 32


def test_frozen_layers_unchanged_after_a_step_and_the_rest_trained(checkpoint):
    model = classifier(checkpoint, "sequence", 3, {0: "a", 1: "b", 2: "c"}, "pretrained", seed=0)
    freeze(model, 2, embeddings=False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    input_ids = torch.randint(2, 50, (4, 10))
    loss = torch.nn.functional.cross_entropy(model(input_ids=input_ids).logits, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        changed = not torch.equal(before[name], parameter)
        frozen = any(f"encoder.layer.{i}." in name for i in (0, 1))
        if frozen:
            assert not changed, name
        elif name.endswith("weight") and ("encoder.layer" in name or "classifier" in name):
            assert changed, name
    assert not torch.equal(before["bert.embeddings.word_embeddings.weight"],
                           model.bert.embeddings.word_embeddings.weight)  # embeddings train, as in Geneformer


def test_freezing_embeddings_too(checkpoint):
    model = classifier(checkpoint, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    freeze(model, 1, embeddings=True)
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert all(p.requires_grad for p in model.bert.encoder.layer[1].parameters())


def test_random_init_differs_from_pretrained(checkpoint):
    pretrained = classifier(checkpoint, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    random = classifier(checkpoint, "sequence", 2, {0: "a", 1: "b"}, "random", seed=0)
    assert not torch.equal(pretrained.bert.encoder.layer[0].attention.self.query.weight,
                           random.bert.encoder.layer[0].attention.self.query.weight)


def test_checkpoint_mismatches_refused(checkpoint, tmp_path):
    check_checkpoint(checkpoint, vocab_size=50, model_input_size=32)
    with pytest.raises(InputError, match="vocab_size 50"):
        check_checkpoint(checkpoint, vocab_size=25426, model_input_size=32)
    with pytest.raises(InputError, match="max_position_embeddings"):
        check_checkpoint(checkpoint, vocab_size=50, model_input_size=2048)
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(InputError, match="no weights"):
        check_checkpoint(checkpoint, vocab_size=50, model_input_size=32)
    with pytest.raises(InputError, match="no config.json"):
        check_checkpoint(tmp_path / "missing", vocab_size=50, model_input_size=32)


def test_checkpoint_of_another_architecture_refused(checkpoint):
    """BERT (Geneformer) and ALBERT checkpoints fine-tune; another model type would load its own classes."""
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(InputError, match="model_type 'gpt2'"):
        check_checkpoint(checkpoint, vocab_size=50, model_input_size=32)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_load_only_as_tensors(checkpoint, tmp_path):
    """pytorch_model.bin is a pickle: it loads with torch.load(weights_only=True) or not at all."""
    model = classifier(checkpoint, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    (checkpoint / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({**model.state_dict(), "payload": Exploit(marker)}, checkpoint / "pytorch_model.bin")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        classifier(checkpoint, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    assert not marker.exists()
    torch.save(model.state_dict(), checkpoint / "pytorch_model.bin")  # plain tensors load
    reloaded = classifier(checkpoint, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    assert torch.equal(reloaded.classifier.weight, model.classifier.weight)

