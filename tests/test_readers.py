"""Source readers: tiny files in each real format (h5ad variants, GEO triplets + pData, gene list
pickles) become the canonical raw-count AnnData, or are refused with the file named."""

from __future__ import annotations

import gzip
import logging
import os
import pickle

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workflow_scripts.core.counts import iter_count_chunks
from workflow_scripts.core.dictionaries import map_gene_symbols
from workflow_scripts.core.errors import InputError
from workflow_scripts.prepare.readers import (
    canonical_anndata,
    counts_from_log_normalized,
    find_raw_counts,
    gene_labels_from_pickle,
    looks_log_normalized,
    prepare_cardiomyopathy,
    prepare_pancreas,
    prepare_sciplex2,
    read_geo_triplets,
    read_user_h5ad,
    write_canonical_h5ad,
)

GENE_IDS = [f"ENSG{index:011d}" for index in range(1, 9)]
SYMBOLS = ["INS", "GCG", "SST", "PPY", "KRT19", "PRSS1", "VWF", "SOX10"]
NAME_TO_ID = dict(zip(SYMBOLS, GENE_IDS))


def raw_counts(n_cells: int, n_genes: int, seed: int = 0) -> sp.csr_matrix:
    """Poisson counts in which every cell has at least one gene with a single count."""
    rng = np.random.default_rng(seed)
    dense = rng.poisson(3.0, size=(n_cells, n_genes)).astype(np.float32)
    dense[np.arange(n_cells), rng.integers(0, n_genes, n_cells)] = 1
    return sp.csr_matrix(dense)


def normalized(counts: sp.csr_matrix, target_sum: float) -> sp.csr_matrix:
    """scanpy's normalize_total(target_sum) without the log1p, stored as float32."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    return sp.csr_matrix(counts.multiply(target_sum / totals[:, None]), dtype=np.float32)


def log_normalized(counts: sp.csr_matrix, target_sum: float = 1e4) -> sp.csr_matrix:
    """scanpy's normalize_total(target_sum) + log1p, stored as float32 like scanpy does."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scaled = sp.csr_matrix(counts.multiply(target_sum / totals[:, None]), dtype=np.float64)
    scaled.data = np.log1p(scaled.data)
    return scaled.astype(np.float32)


def cell_index(n_cells: int) -> list[str]:
    return [f"cell_{i:03d}" for i in range(n_cells)]


def write_user_h5ad(path, counts: sp.csr_matrix, stored_in: str) -> int:
    """An h5ad with the counts in X, in layers['counts'] or in .raw (the latter two beside a
    log-normalized X; .raw with more genes, in another order); returns the number of var genes."""
    obs = pd.DataFrame({"cell_type": np.resize(["a", "b"], counts.shape[0])}, index=cell_index(counts.shape[0]))
    var = pd.DataFrame(index=GENE_IDS[:counts.shape[1]])
    if stored_in == "X":
        adata = ad.AnnData(X=counts, obs=obs, var=var)
    elif stored_in == "layers":
        adata = ad.AnnData(X=log_normalized(counts), obs=obs, var=var, layers={"counts": counts})
    else:
        full = ad.AnnData(X=counts[:, ::-1], obs=obs, var=var.iloc[::-1])
        adata = ad.AnnData(X=log_normalized(counts)[:, :-2], obs=obs, var=var.iloc[:-2])
        adata.raw = full
    adata.write_h5ad(path)
    return adata.n_vars


@pytest.mark.parametrize(("stored_in", "where"), [("X", "X"), ("layers", "layers['counts']"), ("raw", "raw.X")])
def test_counts_found_where_stored(tmp_path, stored_in, where):
    counts = raw_counts(6, 8)
    path = tmp_path / f"{stored_in}.h5ad"
    n_genes = write_user_h5ad(path, counts, stored_in)
    matrix, found = find_raw_counts(ad.read_h5ad(path), str(path))
    assert found == where and matrix.dtype == np.int32
    adata = read_user_h5ad(path, ["cell_type"], NAME_TO_ID)
    assert list(adata.var_names) == GENE_IDS[:n_genes]
    assert (adata.X != counts[:, :n_genes]).nnz == 0


def test_no_raw_counts_is_refused_with_what_was_found():
    adata = ad.AnnData(X=log_normalized(raw_counts(4, 5)))
    with pytest.raises(InputError, match=r"X: non-integer values[\s\S]*fix: provide the raw integer counts"):
        find_raw_counts(adata, "mem")


def test_looks_log_normalized():
    counts = raw_counts(6, 5)
    assert looks_log_normalized(log_normalized(counts))
    assert not looks_log_normalized(counts)
    assert not looks_log_normalized(np.array([[-0.5, 1.2], [0.3, 0.0]]))  # scaled / centered
    assert not looks_log_normalized(counts.multiply(1000.5).tocsr())  # far above any log1p value


@pytest.mark.parametrize("target_sum", [1.0, 10.0, 1e4, 1e6])
def test_log_normalized_counts_are_inverted_exactly(target_sum):
    counts = raw_counts(40, 30, seed=1)
    recovered = counts_from_log_normalized(log_normalized(counts, target_sum), "mem")
    assert recovered.dtype == np.int32 and (recovered != counts).nnz == 0


def test_large_counts_in_float32_log_values_are_inverted_exactly():
    counts = raw_counts(40, 30, seed=6)
    counts[:, 0] = 5000  # deep genes: float32 rounding of their log1p values stays below the tolerance
    recovered = counts_from_log_normalized(log_normalized(counts), "mem")
    assert (recovered != counts).nnz == 0


def test_log1p_values_rounded_to_three_decimals_are_inverted():
    """As scanpy's pbmc68k_reduced `.raw`: log1p(counts / total * 1e4) stored rounded to 3 decimals,
    so quotients are 1e-3 off integers; the tolerance follows the rounding, not float precision."""
    counts = raw_counts(40, 30, seed=12)
    rounded = log_normalized(counts)
    rounded.data = np.round(rounded.data, 3).astype(np.float32)
    recovered = counts_from_log_normalized(rounded, "mem")
    assert (recovered != counts).nnz == 0


@pytest.mark.parametrize("target_sum", [1.0, 10.0])
def test_normalized_values_without_log1p_are_not_taken_for_log1p(target_sum):
    """Proportions and small target sums lie below 20 and are not integers, as log1p values are; read
    as log1p they invert to near-integers (2.0003 for a count of 2), which must not pass for counts."""
    counts = sp.csr_matrix(np.random.default_rng(7).poisson(1.0, size=(60, 400)).astype(np.float32))
    counts[np.arange(60), np.arange(60)] = 1  # a singleton count in every cell, as in real profiles
    with pytest.raises(InputError, match="without the log1p"):
        counts_from_log_normalized(normalized(counts, target_sum), "mem")


def test_inversion_refused_when_cells_have_no_singleton_counts():
    rng = np.random.default_rng(2)
    counts = sp.csr_matrix(rng.integers(2, 9, size=(20, 15)).astype(np.float32))  # smallest count 2 or more
    with pytest.raises(InputError, match="is an integer .* for only"):
        counts_from_log_normalized(log_normalized(counts), "mem")


def test_inversion_refused_for_values_that_are_not_log_counts():
    values = sp.csr_matrix(np.random.default_rng(3).uniform(0.1, 5.0, size=(20, 15)))
    with pytest.raises(InputError, match="cannot be recovered"):
        counts_from_log_normalized(values, "mem")


def test_user_h5ad_with_only_log_normalized_values_is_inverted(tmp_path, caplog):
    counts = raw_counts(12, 8, seed=4)
    obs = pd.DataFrame({"cell_type": list("ab") * 6, "donor": ["d1"] * 12}, index=cell_index(12))
    path = tmp_path / "user.h5ad"
    ad.AnnData(X=log_normalized(counts), obs=obs, var=pd.DataFrame(index=GENE_IDS)).write_h5ad(path)
    with caplog.at_level(logging.WARNING):
        adata = read_user_h5ad(path, ["cell_type", "donor"], NAME_TO_ID)
    assert "recovered by inverting" in caplog.text
    assert (adata.X != counts).nnz == 0
    assert list(adata.obs.columns) == ["cell_type", "donor", "n_counts"]


def test_user_h5ad_refused_when_counts_cannot_be_found_or_inverted(tmp_path):
    values = np.random.default_rng(5).normal(size=(6, 8)).astype(np.float32)  # scaled data: negative values
    path = tmp_path / "scaled.h5ad"
    ad.AnnData(X=values, obs=pd.DataFrame({"cell_type": ["a"] * 6}, index=cell_index(6)),
               var=pd.DataFrame(index=GENE_IDS)).write_h5ad(path)
    with pytest.raises(InputError, match="scaled.h5ad: no raw integer counts found.*negative values"):
        read_user_h5ad(path, ["cell_type"], NAME_TO_ID)


def test_user_h5ad_with_symbols_and_raw_counts_is_canonical(tmp_path):
    counts = raw_counts(10, 8, seed=6)
    obs = pd.DataFrame({"label": list("xy") * 5}, index=cell_index(10))
    path = tmp_path / "symbols.h5ad"
    ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=[s.lower() for s in SYMBOLS])).write_h5ad(path)
    adata = read_user_h5ad(path, ["label"], NAME_TO_ID)
    assert list(adata.var_names) == GENE_IDS and list(adata.var["ensembl_id"]) == GENE_IDS
    assert np.array_equal(adata.obs["n_counts"].to_numpy(), np.asarray(counts.sum(axis=1)).ravel())


def test_missing_label_column_refused(tmp_path):
    path = tmp_path / "nolabel.h5ad"
    ad.AnnData(X=raw_counts(4, 8), obs=pd.DataFrame({"cell_type": list("abab")}, index=cell_index(4)),
               var=pd.DataFrame(index=GENE_IDS)).write_h5ad(path)
    with pytest.raises(InputError, match=r"nolabel.h5ad: obs lacks the column\(s\) \['disease'\]"):
        read_user_h5ad(path, ["disease"], NAME_TO_ID)
    with pytest.raises(InputError, match=r"\['donor'\]"):
        read_user_h5ad(path, ["cell_type", "donor"], NAME_TO_ID)


def test_unreadable_or_missing_file_refused(tmp_path):
    path = tmp_path / "broken.h5ad"
    path.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(InputError, match="broken.h5ad: not a readable h5ad file"):
        read_user_h5ad(path, ["cell_type"], NAME_TO_ID)
    with pytest.raises(InputError, match="file not found"):
        read_user_h5ad(tmp_path / "absent.h5ad", ["cell_type"], NAME_TO_ID)


def test_map_gene_symbols_counts_and_strips_versions():
    names = ["ENSG00000000001.12", "GCG", "sst", "NOT_A_GENE", "ENSMUSG00000000001", "ENSG00000000004_PAR_Y.3",
             "ENSG00000000005.7_PAR_Y"]
    ids, stats = map_gene_symbols(names, NAME_TO_ID)
    assert list(ids) == [GENE_IDS[0], GENE_IDS[1], GENE_IDS[2], "", "", "", GENE_IDS[4]]
    assert stats == {"n_names": 7, "ensembl_ids": 2, "symbols_exact": 1, "symbols_upper_case": 1,
                     "unmapped": 3, "mapped": 4}


def test_canonical_anndata_sums_duplicates_and_drops_unmapped():
    counts = sp.csr_matrix(np.array([[1, 2, 3, 4], [0, 5, 0, 6], [0, 0, 7, 0]], dtype=np.int64))
    ids = np.array([GENE_IDS[0], GENE_IDS[1], "", GENE_IDS[0]])  # two columns map to one gene
    adata = canonical_anndata(counts, ids, pd.DataFrame(index=["a", "b", "c"]), "mem")
    assert list(adata.var_names) == GENE_IDS[:2]
    assert adata.X.dtype == np.int32 and sp.isspmatrix_csr(adata.X)
    assert adata.X.toarray().tolist() == [[5, 2], [6, 5]]  # cell c had counts only in the unmapped gene
    assert list(adata.obs_names) == ["a", "b"] and adata.obs["n_counts"].tolist() == [7, 11]


def test_canonical_anndata_refusals():
    counts = sp.csr_matrix(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(InputError, match="none of the 2 genes maps"):
        canonical_anndata(counts, np.array(["", ""]), pd.DataFrame(index=["a", "b"]), "mem")
    with pytest.raises(InputError, match="cell ids .* repeat"):
        canonical_anndata(counts, np.array(GENE_IDS[:2]), pd.DataFrame(index=["a", "a"]), "mem")


def write_scib_pancreas(path, counts_layer: sp.csr_matrix, technologies: list[str]) -> None:
    """scIB's human_pancreas_norm_complexBatch.h5ad layout: normalized X, counts layer, symbols."""
    n_cells = counts_layer.shape[0]
    obs = pd.DataFrame({"tech": pd.Categorical(technologies),
                        "celltype": pd.Categorical(np.resize(["alpha", "beta", "delta"], n_cells)),
                        "size_factors": np.ones(n_cells)},
                       index=[f"human1_lib1.final_cell_{i:04d}" for i in range(n_cells)])
    symbols = SYMBOLS[:6] + ["NOVEL1", "INS-IGF2"]
    ad.AnnData(X=log_normalized(sp.csr_matrix(np.rint(counts_layer.toarray()) + 1)), obs=obs,
               var=pd.DataFrame(index=symbols), layers={"counts": counts_layer}).write_h5ad(path)


def test_prepare_pancreas_reads_counts_layer_and_renames_columns(tmp_path):
    counts = raw_counts(9, 8, seed=7)
    path = tmp_path / "human_pancreas_norm_complexBatch.h5ad"
    write_scib_pancreas(path, counts, ["celseq"] * 3 + ["inDrop1"] * 6)
    names = {**NAME_TO_ID, "INS-IGF2": GENE_IDS[0]}  # a second symbol of the INS gene: summed
    adata = prepare_pancreas(path, names)
    assert list(adata.var_names) == GENE_IDS[:6]
    expected = counts.toarray()[:, :6].astype(np.int64)
    expected[:, 0] += counts.toarray()[:, 7].astype(np.int64)
    assert np.array_equal(adata.X.toarray(), expected)
    assert adata.obs["cell_type"].tolist()[:3] == ["alpha", "beta", "delta"]
    assert adata.obs["batch"].tolist() == adata.obs["technology"].tolist() == ["celseq"] * 3 + ["inDrop1"] * 6
    output = tmp_path / "pancreas.h5ad"
    write_canonical_h5ad(adata, output)
    chunks = list(iter_count_chunks(output, chunk_size=4))
    assert sum(chunk.matrix.shape[0] for chunk in chunks) == 9


def test_prepare_pancreas_rounds_non_umi_values_with_a_warning(tmp_path, caplog):
    counts = raw_counts(6, 8, seed=8).toarray()
    counts[3:] *= 1.37  # a length-normalized, non-UMI technology
    path = tmp_path / "pancreas.h5ad"
    write_scib_pancreas(path, sp.csr_matrix(counts), ["inDrop1"] * 3 + ["smartseq2"] * 3)
    with caplog.at_level(logging.WARNING):
        adata = prepare_pancreas(path, NAME_TO_ID)
    assert "smartseq2" in caplog.text and "inDrop1" not in caplog.text
    assert np.array_equal(adata.X.toarray()[3:], np.rint(counts[3:, :6]))


def write_gz(path, text: str) -> None:
    with gzip.open(path, "wt") as handle:
        handle.write(text)


SCIPLEX_CELLS = {  # barcode: top_oligo, hash_umis (None: the cell is missing from pData)
    "A01_E09_RT_BC_1_Lig_BC_1": ("Nutlin_0_AA08", 120),
    "A01_E09_RT_BC_1_Lig_BC_2": ("Nutlin_0.5_AA06", 90),
    "A01_E09_RT_BC_1_Lig_BC_3": ("Nutlin_100_AB05", 75),
    "A01_E09_RT_BC_1_Lig_BC_4": ("Nutlin_10_BA01", 64),
    "A01_E09_RT_BC_1_Lig_BC_5": ("Dex_10_AC03", 80),  # another drug
    "A01_E09_RT_BC_1_Lig_BC_6": ("SAHA_0_AE08", 80),  # another drug's vehicle well
    "A01_E09_RT_BC_1_Lig_BC_7": ("Nutlin_5_AA04", 12),  # fails the hash UMI filter
    "A01_E09_RT_BC_1_Lig_BC_8": ("NA", 0),  # no hash assigned
    "A01_E09_RT_BC_1_Lig_BC_9": None,  # absent from pData
}
SCIPLEX_GENES = ["ENSG00000000003.14\tTSPAN6", "ENSG00000000005.5\tTNMD", "ENSMUSG00000000001.4\tGnai3",
                 "ENSG00000000419.12\tDPM1"]


def write_sciplex2(tmp_path, cell_column: bool) -> tuple[list, np.ndarray]:
    """GSM4150377's files: triplets (gene, cell, count; 1-based, genes x cells), headerless gene and
    cell annotations, and pData as R's write.table writes it (space-separated, quoted, row names)."""
    prefix = "GSM4150377_sciPlex2_A549_Transcription_Modulators_"
    counts = np.random.default_rng(9).poisson(2.0, size=(len(SCIPLEX_CELLS), len(SCIPLEX_GENES))) + 1
    rows = [f"{gene + 1}\t{cell + 1}\t{counts[cell, gene]}" for cell in range(counts.shape[0])
            for gene in range(counts.shape[1])]
    paths = [tmp_path / f"{prefix}UMI.count.matrix.gz", tmp_path / f"{prefix}gene.annotations.txt.gz",
             tmp_path / f"{prefix}cell.annotations.txt.gz", tmp_path / "GSM4150377_sciPlex2_pData.txt.gz"]
    write_gz(paths[0], "\n".join(rows) + "\n")
    write_gz(paths[1], "\n".join(SCIPLEX_GENES) + "\n")
    write_gz(paths[2], "".join(f"{barcode}\tsciPlex2\n" for barcode in SCIPLEX_CELLS))
    header = (['"Cell"'] if cell_column else []) + ['"sample"', '"n.umi"', '"hash_umis"', '"pval"', '"qval"',
                                                     '"top_to_second_best_ratio"', '"top_oligo"']
    lines = [" ".join(header)]
    for index, (barcode, hashed) in enumerate(SCIPLEX_CELLS.items()):
        if hashed is None:
            continue
        oligo, umis = hashed
        quoted_oligo = "NA" if oligo == "NA" else f'"{oligo}"'
        ratio, qval = ("NA", "NA") if oligo == "NA" else ("42.5", "1.2e-30")
        fields = [f'"{barcode}"'] + ([f'"{barcode}"'] if cell_column else []) + [
            '"sciPlex2"', str(counts[index].sum()), str(umis), "0", qval, ratio, quoted_oligo]
        lines.append(" ".join(fields))
    write_gz(paths[3], "\n".join(lines) + "\n")
    return paths, counts


def test_read_geo_triplets_orients_cells_by_genes(tmp_path):
    paths, counts = write_sciplex2(tmp_path, cell_column=True)
    adata = read_geo_triplets(*paths[:3])
    assert adata.shape == counts.shape
    assert list(adata.obs_names) == list(SCIPLEX_CELLS) and adata.obs["sample"].iloc[0] == "sciPlex2"
    assert adata.var_names[0] == "ENSG00000000003.14" and adata.var["gene_short_name"].iloc[0] == "TSPAN6"
    assert np.array_equal(adata.X.toarray(), counts)


@pytest.mark.parametrize("cell_column", [True, False])
def test_prepare_sciplex2_keeps_nutlin_and_its_vehicle(tmp_path, cell_column):
    paths, counts = write_sciplex2(tmp_path, cell_column)
    adata = prepare_sciplex2(*paths)
    kept = list(SCIPLEX_CELLS)[:4]
    assert list(adata.obs_names) == kept
    assert adata.obs["dose"].tolist() == ["0", "0.5", "100", "10"]
    assert adata.obs["treatment"].tolist() == ["vehicle", "nutlin3a", "nutlin3a", "nutlin3a"]
    assert adata.obs["replicate"].tolist() == ["rep2", "rep3", "rep2", "rep1"]
    assert list(adata.var_names) == ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419"]  # mouse gene dropped
    assert np.array_equal(adata.X.toarray(), counts[:4][:, [0, 1, 3]])


def test_prepare_sciplex2_refuses_unknown_drug_and_mismatched_files(tmp_path):
    paths, _ = write_sciplex2(tmp_path, cell_column=True)
    with pytest.raises(InputError, match=r"no cell passing the hash filters is assigned to 'Nutlin3A'"):
        prepare_sciplex2(*paths, drug="Nutlin3A")
    write_gz(paths[1], "\n".join(SCIPLEX_GENES[:2]) + "\n")  # fewer genes than the matrix uses
    with pytest.raises(InputError, match="gene indices span 1-4, outside 1-2"):
        prepare_sciplex2(*paths)


def write_chaffin(path) -> np.ndarray:
    """SCP1303's human_dcm_hcm_scportal h5ad layout: CellBender counts in X (float), symbols as var
    names with Ensembl IDs in var['gene_ids'], cellranger counts in a layer."""
    n_cells = 8
    counts = raw_counts(n_cells, 8, seed=10).toarray()
    obs = pd.DataFrame({
        "biosample_id": [f"P{i // 2}_LV" for i in range(n_cells)],
        "donor_id": [f"P{1290 + i // 2}" for i in range(n_cells)],
        "disease": ["NF", "NF", "HCM", "HCM", "DCM", "DCM", "NF", "HCM"],
        "cell_type_leiden0.6": ["Cardiomyocyte_I", "Fibroblast_I", "Cardiomyocyte_II", "Cardiomyocyte_III",
                                "Cardiomyocyte_I", "Macrophage", "Cardiomyocyte_I", "Cardiomyocyte_II"],
    }, index=[f"TTTGTTGTCTTGCAGA-1-{i}" for i in range(n_cells)])
    var = pd.DataFrame({"gene_ids": GENE_IDS, "feature_types": "Gene Expression", "genome": "GRCh38"},
                       index=[f"SYM{i}" for i in range(8)])
    ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var,
               layers={"cellranger_raw": sp.csr_matrix(counts + 5)}).write_h5ad(path)
    return counts


def test_prepare_cardiomyopathy_keeps_cardiomyocytes(tmp_path):
    path = tmp_path / "human_dcm_hcm_scportal_03.17.2022.h5ad"
    counts = write_chaffin(path)
    adata = prepare_cardiomyopathy(path, {})
    rows = [0, 2, 3, 4, 6, 7]
    assert adata.obs["disease"].tolist() == ["NF", "HCM", "HCM", "DCM", "NF", "HCM"]
    assert adata.obs["donor"].tolist() == ["P1290", "P1291", "P1291", "P1292", "P1293", "P1293"]
    assert adata.obs["cell_type"].tolist()[:2] == ["Cardiomyocyte_I", "Cardiomyocyte_II"]
    assert list(adata.var_names) == GENE_IDS
    assert np.array_equal(adata.X.toarray(), counts[rows])  # X, not the cellranger layer


def test_prepare_cardiomyopathy_refuses_unknown_labels(tmp_path):
    path = tmp_path / "chaffin.h5ad"
    write_chaffin(path)
    with pytest.raises(InputError, match="no cell has cell_type_leiden0.6 in \\['CM'\\]"):
        prepare_cardiomyopathy(path, {}, cardiomyocyte_labels=("CM",))
    with pytest.raises(InputError, match=r"obs lacks the column\(s\) \['individual'\]"):
        prepare_cardiomyopathy(path, {}, donor_column="individual")


def test_dosage_pickle_becomes_gene_label_tsv(tmp_path):
    path = tmp_path / "dosage_sensitivity_TFs.pickle"
    with open(path, "wb") as handle:
        pickle.dump({"Dosage-sensitive TFs": [GENE_IDS[3], GENE_IDS[1]],
                     "Dosage-insensitive TFs": [GENE_IDS[0], GENE_IDS[2] + ".5"]}, handle)
    output = tmp_path / "labels" / "dosage.tsv"
    gene_labels_from_pickle(path, output)
    table = pd.read_csv(output, sep="\t")
    assert table.columns.tolist() == ["ensembl_id", "label"]
    assert table.values.tolist() == [[GENE_IDS[0], "dosage_insensitive"], [GENE_IDS[1], "dosage_sensitive"],
                                     [GENE_IDS[2], "dosage_insensitive"], [GENE_IDS[3], "dosage_sensitive"]]


def test_other_gene_class_pickle_keeps_its_class_names(tmp_path):
    path = tmp_path / "bivalent.pickle"
    with open(path, "wb") as handle:
        pickle.dump({"bivalent": [GENE_IDS[1]], "lys4_only": [GENE_IDS[0], GENE_IDS[2]]}, handle)
    gene_labels_from_pickle(path, tmp_path / "out.tsv")
    table = pd.read_csv(tmp_path / "out.tsv", sep="\t")
    assert table.values.tolist() == [[GENE_IDS[0], "lys4_only"], [GENE_IDS[1], "bivalent"], [GENE_IDS[2], "lys4_only"]]


def test_gene_class_pickle_needs_two_lists(tmp_path):
    path = tmp_path / "one.pickle"
    path.write_bytes(pickle.dumps({"only_class": [GENE_IDS[0]]}))
    with pytest.raises(InputError, match="holds 1 gene list"):
        gene_labels_from_pickle(path, tmp_path / "out.tsv")
    assert not (tmp_path / "out.tsv").exists()


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_dosage_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"Dosage-sensitive TFs": [Exploit(marker)], "Dosage-insensitive TFs": []}))
    with pytest.raises(InputError, match="refused global"):
        gene_labels_from_pickle(path, tmp_path / "out.tsv")
    assert not marker.exists() and not (tmp_path / "out.tsv").exists()


def test_write_canonical_h5ad_checks_the_contract(tmp_path):
    adata = canonical_anndata(raw_counts(3, 8), np.array(GENE_IDS), pd.DataFrame(index=cell_index(3)), "mem")
    adata.obs["n_counts"] += 1
    with pytest.raises(ValueError, match="row sums"):
        write_canonical_h5ad(adata, tmp_path / "bad.h5ad")
    assert list(tmp_path.iterdir()) == []


def test_pbmc_like_file_with_symbols_scaled_x_and_log_normalized_raw(tmp_path, caplog):
    """As scanpy's pbmc68k_reduced: gene symbols, z-scored X, log1p-normalized `.raw` and no counts
    stored anywhere: the counts are recovered from `.raw` and the symbols mapped to Ensembl IDs."""
    counts = raw_counts(30, len(SYMBOLS), seed=9)
    logged = log_normalized(counts)
    dense = logged.toarray()
    scaled = (dense - dense.mean(axis=0)) / dense.std(axis=0)
    obs = pd.DataFrame({"cell_type": np.resize(["B", "T", "NK"], 30)}, index=cell_index(30))
    adata = ad.AnnData(X=scaled.astype(np.float32), obs=obs, var=pd.DataFrame(index=SYMBOLS))
    adata.raw = ad.AnnData(X=logged, obs=obs, var=pd.DataFrame(index=SYMBOLS))
    path = tmp_path / "pbmc_like.h5ad"
    adata.write_h5ad(path)
    with caplog.at_level(logging.WARNING):
        prepared = read_user_h5ad(path, ["cell_type"], NAME_TO_ID)
    assert "inverting the log1p normalization of raw.X" in caplog.text
    assert list(prepared.var_names) == GENE_IDS and (prepared.X != counts).nnz == 0


def test_counts_stored_as_near_integer_floats_are_accepted(tmp_path):
    """As CellTypist's sample: raw counts stored as floats, a rounding error off integers."""
    counts = raw_counts(12, 8, seed=10)
    noisy = counts.astype(np.float64)
    noisy.data += np.random.default_rng(11).uniform(-1e-7, 1e-7, noisy.data.size)
    path = tmp_path / "float_counts.h5ad"
    obs = pd.DataFrame({"cell_type": np.resize(["a", "b"], 12)}, index=cell_index(12))
    ad.AnnData(X=noisy, obs=obs, var=pd.DataFrame(index=SYMBOLS)).write_h5ad(path)
    prepared = read_user_h5ad(path, ["cell_type"], NAME_TO_ID)
    assert prepared.X.dtype == np.int32 and (prepared.X != counts).nnz == 0
