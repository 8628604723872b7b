"""Geneformer-shaped BERT (or ALBERT) models: configuration, loading, freezing, and checkpoint checks.

`model.architecture` bert is Geneformer's; albert is BERT with ALBERT's two parameter reductions
(Lan et al. 2019): a factorized embedding (vocabulary x embedding_size, then embedding_size x
hidden) and, with share_layers, one set of layer weights used at every depth. Both are transformers'
own classes, so their checkpoints load with from_pretrained and the Auto classes. Models are built
through the Auto classes or looked up by name (saved_class), so a job imports the modeling module of
the architecture it loads and no other; a job that reads configs alone (check_checkpoint) none.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from transformers import (
    AlbertConfig,
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    PretrainedConfig,
)

from .config import WEIGHT_FILES
from .devices import claim_gpus, process_ranks
from .errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

# Cell tasks put one label on a whole cell; gene tasks put labels on gene tokens.
CLASSIFIER_HEADS = {"sequence": AutoModelForSequenceClassification, "token": AutoModelForTokenClassification}
# model_type -> the prefix of its classes' names; the bare encoder is PREFIX + "Model"
ENCODER_PREFIXES = {"bert": "Bert", "albert": "Albert"}
# the classes a checkpoint's config.architectures[0] may name (masked LM, classifiers, bare encoder)
SAVED_CLASS_NAMES = {prefix + kind for prefix in ENCODER_PREFIXES.values()
                     for kind in ("Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification")}
MLM_HEADS = {"bert": "cls", "albert": "predictions"}  # model_type -> attribute of the masked-LM head

# model.preset: the shape keys a preset fills in where the config leaves them null.
MODEL_PRESETS = {
    "cpu_small": {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128},
    "geneformer_v1_10m": {"num_hidden_layers": 6, "hidden_size": 256, "num_attention_heads": 4,
                          "intermediate_size": 512},
    "geneformer_106m": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12,
                        "intermediate_size": 3072},
}
SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def model_shape(model: dict[str, Any]) -> dict[str, Any]:
    """The model settings with the preset's shape where a shape key is null or absent (explicit keys win)."""
    preset = MODEL_PRESETS.get(model.get("preset") or "", {})
    if model.get("preset") and not preset:
        raise InputError("model.preset", f"unknown preset {model['preset']!r}", f"use one of {list(MODEL_PRESETS)}")
    shape = {key: model.get(key) if model.get(key) is not None else preset.get(key) for key in SHAPE_KEYS}
    missing = [key for key, value in shape.items() if value is None]
    if missing:
        raise InputError("model", f"{', '.join(missing)} not set and no preset gives them",
                         f"set them, or model.preset to one of {list(MODEL_PRESETS)}")
    return {**model, **shape}


def geneformer_config(model: dict[str, Any], vocab_size: int, model_input_size: int) -> PretrainedConfig:
    """BertConfig with Geneformer's shape (ReLU, LayerNorm eps 1e-12, absolute positions, pad id 0), or
    the AlbertConfig of the same shape with a factorized embedding and/or shared layers."""
    model = model_shape(model)
    architecture = model.get("architecture", "bert")
    if architecture == "bert":
        if model.get("embedding_size") is not None or model.get("share_layers"):
            raise InputError("model", "embedding_size and share_layers are ALBERT options",
                             "set model.architecture: albert, or remove them")
        return BertConfig(
            vocab_size=vocab_size,
            hidden_size=model["hidden_size"],
            num_hidden_layers=model["num_hidden_layers"],
            num_attention_heads=model["num_attention_heads"],
            intermediate_size=model["intermediate_size"],
            hidden_act=model["hidden_act"],
            hidden_dropout_prob=model["hidden_dropout_prob"],
            attention_probs_dropout_prob=model["attention_probs_dropout_prob"],
            initializer_range=model["initializer_range"],
            layer_norm_eps=model["layer_norm_eps"],
            max_position_embeddings=model_input_size,
            pad_token_id=0,
            position_embedding_type="absolute",
        )
    return AlbertConfig(
        vocab_size=vocab_size,
        embedding_size=model.get("embedding_size") or model["hidden_size"],
        hidden_size=model["hidden_size"],
        num_hidden_layers=model["num_hidden_layers"],
        num_hidden_groups=1 if model.get("share_layers") else model["num_hidden_layers"],
        inner_group_num=1,
        num_attention_heads=model["num_attention_heads"],
        intermediate_size=model["intermediate_size"],
        hidden_act=model["hidden_act"],
        hidden_dropout_prob=model["hidden_dropout_prob"],
        attention_probs_dropout_prob=model["attention_probs_dropout_prob"],
        classifier_dropout_prob=model["hidden_dropout_prob"],  # as BERT's heads, which reuse hidden dropout
        initializer_range=model["initializer_range"],
        layer_norm_eps=model["layer_norm_eps"],
        max_position_embeddings=model_input_size,
        pad_token_id=0,
        bos_token_id=None,  # ALBERT's text defaults (2, 3) are gene tokens here
        eos_token_id=None,
    )


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters: tied (MLM decoder = embeddings) and shared (ALBERT layers) weights count once."""
    return sum(parameter.numel() for parameter in model.parameters())


def masked_lm_parameter_count(model: dict[str, Any], vocab_size: int, model_input_size: int) -> int:
    """Parameters of the masked LM these settings build, counted on the meta device (no weights allocated)."""
    with torch.device("meta"):
        return parameter_count(AutoModelForMaskedLM.from_config(geneformer_config(model, vocab_size,
                                                                                  model_input_size)))


def check_checkpoint(checkpoint: str | Path, vocab_size: int, model_input_size: int) -> PretrainedConfig:
    """Refuse a checkpoint directory that is incomplete, not a BERT or ALBERT, or does not fit the token
    dictionary."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise InputError(str(checkpoint), "no config.json", "point model.checkpoint at a save_pretrained directory")
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES):
        raise InputError(str(checkpoint), f"no weights ({' or '.join(WEIGHT_FILES)})", "copy the weights file in")
    config = AutoConfig.from_pretrained(checkpoint)
    check_model_type(config, str(checkpoint))
    if config.vocab_size != vocab_size:
        raise InputError(
            str(checkpoint),
            f"vocab_size {config.vocab_size} differs from the token dictionary's {vocab_size} tokens",
            "use the token dictionary the checkpoint was trained with (reference.token_dictionary)",
        )
    if config.max_position_embeddings < model_input_size:
        raise InputError(
            str(checkpoint),
            f"max_position_embeddings {config.max_position_embeddings} < tokenizer.model_input_size {model_input_size}",
            "set tokenizer.model_input_size to the checkpoint's input size",
        )
    return config


def check_model_type(config: PretrainedConfig, source: str) -> None:
    """Refuse a checkpoint that is neither a BERT nor an ALBERT."""
    if config.model_type not in ENCODER_PREFIXES:
        raise InputError(source, f"model_type {config.model_type!r} is not one of {list(ENCODER_PREFIXES)}",
                         "use a BERT (Geneformer) or ALBERT checkpoint")


def saved_class(config: PretrainedConfig, source: str) -> type[PreTrainedModel]:
    """The class a checkpoint's config names (architectures), or its bare encoder when it names none we know.
    Looked up by name in transformers' lazy namespace, which imports that architecture's module alone."""
    check_model_type(config, source)
    name = (config.architectures or [""])[0]
    return getattr(transformers, name if name in SAVED_CLASS_NAMES else ENCODER_PREFIXES[config.model_type] + "Model")


def new_masked_lm(config: PretrainedConfig, seed: int) -> PreTrainedModel:
    """A freshly initialised masked LM (BertForMaskedLM or AlbertForMaskedLM) of `config`, seeded.
    SDPA attention: both BERT and ALBERT support it in transformers 5."""
    torch.manual_seed(seed)
    return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")


def classifier(checkpoint: str | Path, head: str, n_labels: int, id2label: dict[int, str], init: str, seed: int
               ) -> PreTrainedModel:
    """A sequence ("sequence") or token ("token") classifier of the checkpoint's architecture (BERT or
    ALBERT) from its weights, or the same architecture randomly initialised (init "random")."""
    torch.manual_seed(seed)
    model_class = CLASSIFIER_HEADS[head]
    labels = {"num_labels": n_labels, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if init == "random":
        config = AutoConfig.from_pretrained(checkpoint, **labels)
        return model_class.from_config(config, attn_implementation="sdpa")
    return model_class.from_pretrained(checkpoint, attn_implementation="sdpa", **labels)


def encoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The encoder's layers in order (BERT's layer list; an unshared ALBERT's one-layer groups), refused
    for an ALBERT whose layers share weights: there the first n layers are the same weights as the rest."""
    base, config = model.base_model, model.config
    if config.model_type == "bert":
        return list(base.encoder.layer)
    if config.num_hidden_groups != config.num_hidden_layers or config.inner_group_num != 1:
        raise InputError("finetuning.freeze_layers", f"the model's {config.num_hidden_layers} layers share "
                         f"{config.num_hidden_groups} group(s) of weights (ALBERT cross-layer sharing), so the "
                         "first layers cannot be frozen alone", "set freeze_layers: 0 (freeze_embeddings still works)")
    return list(base.encoder.albert_layer_groups)


def embedding_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The input side: embeddings, and in ALBERT the embedding -> hidden projection of the factorization."""
    base = model.base_model
    return [base.embeddings] + ([base.encoder.embedding_hidden_mapping_in] if model.config.model_type == "albert"
                                else [])


def freeze(model: torch.nn.Module, n_layers: int, embeddings: bool) -> None:
    """Freeze the first `n_layers` encoder layers (and the embeddings if asked), as Geneformer does.
    An ALBERT with shared layers can freeze its embeddings but not some of its layers (encoder_layers)."""
    layers = encoder_layers(model) if n_layers else []
    if n_layers > len(layers):
        raise InputError("finetuning.freeze_layers", f"{n_layers} > {len(layers)} layers",
                         "freeze at most the model's number of layers")
    modules = layers[:n_layers] + (embedding_modules(model) if embeddings else [])
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad = False


def pick_device(gpus: int | None = None) -> torch.device:
    """The one place that decides where this process computes.

    gpus None: CUDA when present (for callers that reserved nothing in particular); 0: the CPU, as
    the job reserved no GPU; n > 0: first claim n free GPUs (devices.claim_gpus: nothing happens
    where CUDA_VISIBLE_DEVICES is already set, by SLURM or by the launcher of a multi-GPU job), then
    this process's GPU, cuda:LOCAL_RANK (cuda:0 outside torchrun), or the CPU where CUDA is missing.
    Call it before anything starts CUDA, so that the claim can still choose the GPUs.
    """
    if gpus == 0:
        return torch.device("cpu")
    _, world_size, local_rank = process_ranks()
    if gpus and world_size == 1:
        claim_gpus(gpus)
    if not torch.cuda.is_available():
        if gpus:
            log.warning("%d GPU(s) asked for but CUDA is not available: computing on the CPU", gpus)
        return torch.device("cpu")
    if gpus and gpus > world_size:
        log.warning("%d GPUs reserved but %d process(es) use one each: start a multi-GPU job with "
                    "python -m workflow_scripts.core.devices --gpus N -- COMMAND ...", gpus, world_size)
    return torch.device("cuda", local_rank)


def autocast(device: torch.device):
    """bf16 autocast on GPU; full precision on CPU (bf16 matmuls are slow on most CPUs)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
