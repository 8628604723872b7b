"""The encoder inside any saved model, its hidden states and Geneformer's cell embedding (embeddings and
perturbation read models the same way)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig

from .errors import InputError
from .model import saved_class

DEFAULT_LAYER = -2  # index into hidden_states (embedding output, layer 1, ..., layer N): second-to-last layer


INITS = ("pretrained", "random")


def encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The BERT (or ALBERT) encoder of a masked-LM or classifier model (or the encoder itself)."""
    return model.base_model


@torch.no_grad()
def token_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 layer: int = DEFAULT_LAYER) -> torch.Tensor:
    """Hidden states (batch x positions x hidden) at `layer` of hidden_states, in fp32."""
    output = encoder(model)(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return output.hidden_states[layer].float()


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor, skip_first: bool = False) -> torch.Tensor:
    """Mean over non-padding positions (batch x hidden); skip_first leaves out a leading special token."""
    weights = attention_mask.to(states.dtype).clone()
    if skip_first:
        weights[:, 0] = 0
    return (states * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1)


def cell_embeddings(states: torch.Tensor, attention_mask: torch.Tensor, cls_first: bool) -> torch.Tensor:
    """Geneformer's cell embedding: the `<cls>` state when the encoding starts with one, else the mean
    of the gene tokens' states."""
    return states[:, 0] if cls_first else mean_pool(states, attention_mask)


def load_encoder_model(checkpoint: str | Path, init: str, seed: int) -> torch.nn.Module:
    """The checkpoint's model, of the class its config names (BERT or ALBERT masked LM or classifier; `encoder`
    reaches the encoder inside), or with init "random" the same architecture freshly initialised under `seed` (the
    construction `model.classifier` and `model.new_masked_lm` use, so it matches the random-init control)."""
    if init not in INITS:
        raise InputError("init", f"'{init}' is not one of {', '.join(INITS)}", "use pretrained or random")
    if not (Path(checkpoint) / "config.json").is_file():
        raise InputError(str(checkpoint), "no config.json", "point at a save_pretrained model directory")
    config = AutoConfig.from_pretrained(checkpoint)
    model_class = saved_class(config, str(checkpoint))
    torch.manual_seed(seed)
    if init == "random":
        return model_class._from_config(config, attn_implementation="sdpa")
    return model_class.from_pretrained(checkpoint, attn_implementation="sdpa")
