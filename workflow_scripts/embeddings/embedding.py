"""Cell and gene embeddings of a Geneformer-shaped BERT, as Geneformer extracts them.

A cell's embedding is the mean of its gene tokens' hidden states at one layer (default the
second-to-last: the last is specialised to the pretraining or fine-tuning objective), over
non-padding positions; a model whose token dictionary has `<cls>` (V2) uses that position instead.

`extract_embeddings` writes them for a tokenized dataset in the layout scoring.py scores (with the
PCA baseline of the same cells): obs = cells (index cell_id) with label columns,
obsm[EMBEDDING_KEY] = float32 embedding, uns = what produced it (uns["method"]: geneformer or pca).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..core.batching import RaggedTokens, inference_batches, load_tokenized
from ..core.dictionaries import CLS_TOKEN, SPECIAL_TOKENS, load_token_dictionary
from ..core.encoder import (
    DEFAULT_LAYER,
    cell_embeddings,
    load_encoder_model,
    token_states,
)
from ..core.errors import InputError
from ..core.model import autocast, pick_device
from ..core.outputs import atomic_path
from .scoring import sample_cells, write_embedding_h5ad
from .settings import EmbeddingSettings

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


# --- extraction: cells and genes of a tokenized dataset ------------------------------------------------


def check_layer(layer: int, n_layers: int, source: str) -> int:
    """The hidden_states index `layer` names (0 = embedding output, n_layers = last layer); out of range refused."""
    n_states = n_layers + 1
    if not -n_states <= layer < n_states:
        raise InputError(source, f"layer {layer} is outside the model's hidden states: {-n_states}..{n_states - 1} "
                         f"(0 = embedding output, {n_layers} or -1 = last of {n_layers} layers)",
                         f"pick a layer in {-n_states}..{n_states - 1}; {DEFAULT_LAYER} is Geneformer's default")
    return layer % n_states


def starts_with_cls(tokens: RaggedTokens, rows: np.ndarray, cls_id: int | None, source: str) -> bool:
    """Whether every chosen cell's encoding begins with <cls> (V2 mode: its state is the cell embedding)."""
    if (tokens.lengths[rows] == 0).any():
        raise InputError(source, "has cells without tokens", "re-tokenize: the tokenizer refuses empty cells")
    if cls_id is None:
        return False
    starts = tokens.values[tokens.offsets[rows]] == cls_id
    if starts.all() != starts.any():
        raise InputError(source, f"{int(starts.sum())} of {starts.size} cells start with <cls>, the others do not",
                         "tokenize all cells the same way (tokenizer.special_tokens)")
    return bool(starts.all())


def token_lookup(token_dictionary: dict[str, int], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per token id below vocab_size: its name ("" where the dictionary has none) and whether it is a gene."""
    token_ids = np.fromiter(token_dictionary.values(), dtype=np.int64, count=len(token_dictionary))
    names = np.array(list(token_dictionary), dtype=object)
    in_model = token_ids < vocab_size
    token_names = np.full(vocab_size, "", dtype=object)
    token_names[token_ids[in_model]] = names[in_model]
    is_gene_token = np.ones(vocab_size, dtype=bool)
    is_gene_token[token_ids[in_model & np.isin(names, SPECIAL_TOKENS)]] = False
    return token_names, is_gene_token


@torch.no_grad()
def embed_cells(model: torch.nn.Module, tokens: RaggedTokens, rows: np.ndarray, layer: int, cls_first: bool,
                is_gene_token: np.ndarray, batch_size: int, device: torch.device
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell embeddings of `rows` (float32, in `rows` order), and per token id the float64 sum of its
    states at gene positions and how often it occurred (token positions summed with index_add_)."""
    model.eval()
    model.to(device)
    hidden_size, vocab_size = model.config.hidden_size, len(is_gene_token)
    cells = np.zeros((len(rows), hidden_size), dtype=np.float32)
    gene_sums = torch.zeros((vocab_size, hidden_size), dtype=torch.float64, device=device)
    gene_counts = torch.zeros(vocab_size, dtype=torch.int64, device=device)
    gene_lookup = torch.from_numpy(is_gene_token).to(device)
    batches = inference_batches(tokens.lengths[rows], batch_size)
    for batch in tqdm(batches, desc="embed", unit="batch", file=sys.stderr):
        input_ids, attention_mask = (tensor.to(device) for tensor in tokens.padded(rows[batch]))
        with autocast(device):
            states = token_states(model, input_ids, attention_mask, layer)
        cells[batch] = cell_embeddings(states, attention_mask, cls_first).cpu().numpy()
        at_genes = gene_lookup[input_ids] & attention_mask.bool()
        gene_ids = input_ids[at_genes]
        gene_sums.index_add_(0, gene_ids, states[at_genes].double())
        gene_counts += torch.bincount(gene_ids, minlength=vocab_size)
    return cells, gene_sums.cpu().numpy(), gene_counts.cpu().numpy()


def storage_array(cells: np.ndarray, dtype: str) -> np.ndarray:
    """Cell embeddings as the .npy holds them; bf16 as uint16 bit patterns (numpy has no bfloat16)."""
    if dtype == "bf16":
        return torch.from_numpy(cells).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    stored = cells.astype(np.float16 if dtype == "fp16" else np.float32)
    if not np.isfinite(stored).all():
        raise InputError("dtype", f"embeddings overflow {dtype}", "store them as fp32 or bf16")
    return stored


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Decode a bf16 .npy (uint16 bit patterns): a bfloat16 is the upper half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def cell_obs(dataset: datasets.Dataset, rows: np.ndarray, obs_columns: list[str], source: str) -> pd.DataFrame:
    """cell_id (the index) and the asked obs columns of `rows`, as categoricals."""
    columns = [column for column in dict.fromkeys(obs_columns) if column != "cell_id"]
    missing = [column for column in ["cell_id", *columns] if column not in dataset.column_names]
    if missing:
        raise InputError(source, f"has no column(s) {missing} (columns: {', '.join(dataset.column_names)})",
                         "tokenize with these tokenizer obs_columns, or ask for columns the dataset has")
    obs = dataset.select_columns(["cell_id", *columns]).select(rows).to_pandas().set_index("cell_id")
    return obs.astype("category")


def extract_embeddings(
    checkpoint: str | Path,
    tokenized_dir: str | Path,
    token_dictionary_tsv: str | Path,
    init: str,
    settings: EmbeddingSettings,
    seed: int,
    output_npy: str | Path,
    output_gene_npz: str | Path,
    output_h5ad: str | Path,
    gpus: int | None = None,
) -> None:
    """Cell and gene embeddings of (a seeded sample of at most settings.max_cells cells of) a tokenized
    dataset at the hidden-states layer settings.layer; `init` random gives the same architecture with
    random weights (the control), pretrained the checkpoint's weights.

    Writes the cell embeddings as .npy in settings.dtype (fp32, fp16, or bf16 stored as uint16 bit
    patterns: decode with bf16_to_float32), an h5ad with obs (the label and batch columns) and
    obsm[EMBEDDING_KEY] (float32) for scoring, and an npz of gene embeddings: token_ids, ensembl_ids,
    embeddings (each gene token's mean state over its occurrences, one per cell in a rank value
    encoding) and n_occurrences.
    """
    layer, dtype = settings.layer, settings.dtype
    source = str(tokenized_dir)
    tokens, dataset = load_tokenized(tokenized_dir)
    if len(tokens) == 0:
        raise InputError(source, "holds no cells", "tokenize a dataset with cells")
    token_dictionary = load_token_dictionary(str(token_dictionary_tsv))
    rows = sample_cells(len(tokens), settings.max_cells, seed)
    obs = cell_obs(dataset, rows, settings.obs_columns, source)
    cls_first = starts_with_cls(tokens, rows, token_dictionary.get(CLS_TOKEN), source)
    model = load_encoder_model(checkpoint, init, seed)
    hidden_states_index = check_layer(layer, model.config.num_hidden_layers, f"layer (model {checkpoint})")
    vocab_size = model.config.vocab_size
    if int(tokens.values.max()) >= vocab_size:
        raise InputError(source, f"token id {int(tokens.values.max())} is beyond the model's vocab_size {vocab_size}",
                         "use the token dictionary the checkpoint was trained with")
    token_names, is_gene_token = token_lookup(token_dictionary, vocab_size)
    device = pick_device(gpus)
    cells, gene_sums, gene_counts = embed_cells(model, tokens, rows, layer, cls_first, is_gene_token,
                                                settings.batch_size, device)
    with atomic_path(output_npy) as temporary, open(temporary, "wb") as handle:
        np.save(handle, storage_array(cells, dtype))
    seen = np.flatnonzero(gene_counts)
    with atomic_path(output_gene_npz) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, token_ids=seen, ensembl_ids=token_names[seen].astype(str),
                 embeddings=(gene_sums[seen] / gene_counts[seen, None]).astype(np.float32),
                 n_occurrences=gene_counts[seen])
    uns = {"method": "geneformer", "checkpoint": str(checkpoint), "init": init, "seed": seed, "layer": layer,
           "hidden_states_index": hidden_states_index, "n_layers": model.config.num_hidden_layers,
           "cell_embedding": "cls" if cls_first else "mean", "npy_dtype": dtype, "tokenized_dir": source}
    write_embedding_h5ad(obs, cells, uns, output_h5ad)
    log.info("embedded %d of %d cells (%s state, hidden_states[%d]) and %d gene tokens", len(rows), len(tokens),
             uns["cell_embedding"], hidden_states_index, seen.size)
