"""Geneformer's gene dictionaries: a safe pickle reader, and the TSV form the workflow uses.

Geneformer publishes its token, median and gene-name dictionaries as pickles. Unpickling runs
arbitrary code, so `safe_load_pickle` admits only plain containers, strings and numeric scalars
(numpy's included) and refuses everything else. The project ships the V1 dictionaries converted
once to gzipped TSV (see resources/PROVENANCE.md); the workflow reads only TSV.
"""

from __future__ import annotations

import gzip
import io
import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

PAD_TOKEN = "<pad>"
MASK_TOKEN = "<mask>"
CLS_TOKEN = "<cls>"
EOS_TOKEN = "<eos>"
SPECIAL_TOKENS = (PAD_TOKEN, MASK_TOKEN, CLS_TOKEN, EOS_TOKEN)

# The only globals a Geneformer dictionary pickle needs: numpy scalar reconstruction.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _plain(value):
    """Turn numpy scalars into Python ones and check the value is plain data (lists of it too,
    as in Geneformer's gene-list pickles)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    raise pickle.UnpicklingError(f"refused value of type {type(value).__name__}")


def safe_load_pickle(path: str | Path) -> dict:
    """Load a dictionary pickle that may hold only strings and numeric scalars."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            loaded = _RestrictedUnpickler(io.BytesIO(handle.read())).load()
        if not isinstance(loaded, dict):
            raise pickle.UnpicklingError("the pickle does not hold a dict")
        return {_plain(key): _plain(value) for key, value in loaded.items()}
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as error:
        raise InputError(
            str(path),
            f"not a plain dictionary pickle ({error})",
            "use Geneformer's published dictionaries or a TSV with two columns",
        ) from error


def builtin_path(name: str) -> Path:
    """Path of a dictionary TSV shipped with the package (resources/)."""
    return Path(str(resources.files("workflow_scripts") / "resources" / name))


BUILTIN = {
    "geneformer_v1_tokens": "geneformer_v1_token_dictionary.tsv.gz",
    "geneformer_v1_medians": "geneformer_v1_gene_median_dictionary.tsv.gz",
    "geneformer_v1_gene_names": "geneformer_v1_gene_name_id_dict.tsv.gz",
}


def resolve(path_or_builtin: str) -> Path:
    """A config value is either a built-in name (see BUILTIN) or a file path."""
    if path_or_builtin in BUILTIN:
        return builtin_path(BUILTIN[path_or_builtin])
    return Path(path_or_builtin)


PICKLE_SUFFIXES = (".pkl", ".pickle")  # Geneformer ships its dictionaries as .pkl, its gene lists as .pickle


def _read_two_columns(path: Path, value_name: str) -> pd.DataFrame:
    if not path.exists():
        raise InputError(str(path), "file not found", "check the path in the config")
    if path.suffix in PICKLE_SUFFIXES:
        loaded = safe_load_pickle(path)
        return pd.DataFrame({"key": list(loaded.keys()), value_name: list(loaded.values())})
    try:
        table = pd.read_csv(path, sep="\t", float_precision="round_trip")
    except Exception as error:  # pandas raises many types for unreadable text
        raise InputError(str(path), f"unreadable TSV ({error})", "write a tab-separated file") from error
    if table.shape[1] < 2:
        raise InputError(str(path), "needs two tab-separated columns", "write key<TAB>value rows")
    return table.iloc[:, :2].set_axis(["key", value_name], axis=1)


def load_token_dictionary(path_or_builtin: str) -> dict[str, int]:
    """Token dictionary: token string (Ensembl ID or special token) -> integer id."""
    path = resolve(path_or_builtin)
    table = _read_two_columns(path, "token_id")
    tokens = dict(zip(table["key"].astype(str), table["token_id"].astype(np.int64)))
    if tokens.get(PAD_TOKEN) != 0 or MASK_TOKEN not in tokens:
        raise InputError(str(path), "token dictionary lacks <pad>=0 or <mask>", "use a Geneformer token dictionary")
    if len(set(tokens.values())) != len(tokens):
        raise InputError(str(path), "token ids are not unique", "give every token its own id")
    return {key: int(value) for key, value in tokens.items()}


def load_median_dictionary(path_or_builtin: str) -> dict[str, float]:
    """Gene median dictionary: Ensembl ID -> non-zero median of normalized expression."""
    path = resolve(path_or_builtin)
    table = _read_two_columns(path, "median")
    medians = pd.to_numeric(table["median"], errors="coerce")
    if medians.isna().any() or (medians <= 0).any():
        raise InputError(str(path), "medians must be positive numbers", "drop genes with zero or missing medians")
    return dict(zip(table["key"].astype(str), medians.astype(float)))


def load_gene_name_dictionary(path_or_builtin: str = "geneformer_v1_gene_names") -> dict[str, str]:
    """Gene symbol -> Ensembl ID (Geneformer's published mapping)."""
    table = _read_two_columns(resolve(path_or_builtin), "ensembl_id")
    return dict(zip(table["key"].astype(str), table["ensembl_id"].astype(str)))


def write_dictionary_tsv(mapping: dict, path: str | Path, key_name: str, value_name: str) -> None:
    """Write a dictionary as a two-column TSV (gzipped when the name ends in .gz)."""
    frame = pd.DataFrame({key_name: list(mapping.keys()), value_name: list(mapping.values())})
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as handle:
        frame.to_csv(handle, sep="\t", index=False)


# Human Ensembl gene IDs, with an optional version (".12") and GENCODE's PAR_Y suffix.
ENSEMBL_PATTERN = r"^(ENSG\d{11})(?:\.\d+)?(?:_PAR_Y)?$"


def _upper_case_lookup(gene_name_to_ensembl: dict[str, str]) -> pd.Series:
    """Upper-cased symbol -> Ensembl ID; where symbols differ only in case, the first one wins."""
    upper = pd.Index([str(name).upper() for name in gene_name_to_ensembl], dtype=object)
    lookup = pd.Series(list(gene_name_to_ensembl.values()), index=upper, dtype=object)
    return lookup[~lookup.index.duplicated(keep="first")]


def map_gene_symbols(names, gene_name_to_ensembl: dict[str, str]) -> tuple[np.ndarray, dict[str, int]]:
    """Ensembl ID per gene name ('' when unknown) and how many were IDs, mapped symbols or unmapped.

    Names that already are human Ensembl IDs are kept without their version ('.12'); symbols are
    looked up in the dictionary as written, then upper-cased (mouse-style 'Actb' or lower-case names).
    """
    names = pd.Series(np.asarray(names, dtype=object)).astype(str)
    ensembl = names.str.extract(ENSEMBL_PATTERN, expand=False)
    exact = names.map(gene_name_to_ensembl)
    upper = names.str.upper().map(_upper_case_lookup(gene_name_to_ensembl))
    is_id = ensembl.notna()
    ids = pd.Series(np.where(is_id, ensembl, np.where(exact.notna(), exact, np.where(upper.notna(), upper, ""))))
    stats = {
        "n_names": len(names),
        "ensembl_ids": int(is_id.sum()),
        "symbols_exact": int((~is_id & exact.notna()).sum()),
        "symbols_upper_case": int((~is_id & exact.isna() & upper.notna()).sum()),
        "unmapped": int((ids == "").sum()),
    }
    stats["mapped"] = stats["n_names"] - stats["unmapped"]
    return ids.to_numpy(dtype=str), stats


def gene_vocabulary(
    gene_ids: np.ndarray, tokens: dict[str, int], medians: dict[str, float], source: str, min_genes_in_vocabulary: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of the file: its token id (-1 when it has no token or no median) and its median."""
    index = pd.Index(gene_ids)
    gene_median = index.map(medians).to_numpy(dtype=np.float64, na_value=np.nan)
    gene_token = index.map(tokens).to_numpy(dtype=np.float64, na_value=np.nan)
    usable = ~np.isnan(gene_token) & ~np.isnan(gene_median)
    n_usable = int(usable.sum())
    if n_usable < min_genes_in_vocabulary:
        raise InputError(
            source,
            f"only {n_usable} of {gene_ids.size} genes are in the token dictionary with a median "
            f"(checks.min_genes_in_vocabulary is {min_genes_in_vocabulary})",
            "use Ensembl IDs in var['ensembl_id'] (gene symbols are mapped by prepare_dataset), and set "
            "reference.token_dictionary and reference.medians to dictionaries that cover this dataset's "
            "genes: geneformer_v1 (with the published checkpoint in model.checkpoint), or your own files",
        )
    duplicated = index[usable][index[usable].duplicated()].unique()
    if duplicated.size:
        raise InputError(
            source,
            f"{duplicated.size} vocabulary genes occur in more than one column (e.g. {', '.join(duplicated[:3])})",
            "sum duplicated genes into one column per Ensembl ID",
        )
    return np.where(usable, gene_token, -1).astype(np.int64), gene_median
