"""Process tuning: numpy's AVX-512 kernels off on AMD Zen 4 only, glibc keeps freed memory, a user's own
settings win, and every `python -m workflow_scripts` job applies it before numpy is imported."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_scripts.core.process_tuning import (
    NUMPY_AVX512_FEATURES,
    is_zen4,
    tune_process,
)

AVX512_FLAGS = "fpu sse2 avx2 avx512f avx512dq avx512bw"


def cpuinfo(vendor: str, family: int, flags: str) -> str:
    block = f"processor\t: {{}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 17\nflags\t\t: {flags}\n"
    return block.format(0) + "\n" + block.format(1)


@pytest.mark.parametrize("text, expected", [
    (cpuinfo("AuthenticAMD", 25, AVX512_FLAGS), True),  # Zen 4 (EPYC 9004, Ryzen 7000)
    (cpuinfo("AuthenticAMD", 25, "fpu sse2 avx2"), False),  # Zen 3: same family, no AVX-512
    (cpuinfo("AuthenticAMD", 26, AVX512_FLAGS), False),  # Zen 5: fast compress stores
    (cpuinfo("GenuineIntel", 6, AVX512_FLAGS), False),
    ("", False),
])
def test_zen4_is_recognized_from_cpuinfo(text, expected):
    assert is_zen4(text) is expected


def tuned_in_fresh_process(tmp_path: Path, cpu: str, **environment: str) -> tuple[list[str], str | None]:
    """tune_process() in a new interpreter (numpy not yet imported) with `cpu` as /proc/cpuinfo."""
    (tmp_path / "cpuinfo").write_text(cpu)
    code = ("import json, os, sys; from pathlib import Path; from workflow_scripts.core.process_tuning import tune_process; "
            f"applied = tune_process(Path({str(tmp_path / 'cpuinfo')!r})); import numpy; "
            "print(json.dumps([applied, os.environ.get('NPY_DISABLE_CPU_FEATURES')]))")
    clean = {key: value for key, value in os.environ.items()
             if key not in ("NPY_DISABLE_CPU_FEATURES", "WORKFLOW_PROCESS_TUNING") and not key.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **environment}, capture_output=True, text=True,
                            check=True)
    applied, disabled = json.loads(result.stdout)
    return applied, disabled


def test_zen4_gets_numpy_avx2_kernels_and_glibc_keeps_freed_memory(tmp_path):
    applied, disabled = tuned_in_fresh_process(tmp_path, cpuinfo("AuthenticAMD", 25, AVX512_FLAGS))
    assert disabled == NUMPY_AVX512_FEATURES
    assert any("NPY_DISABLE_CPU_FEATURES" in setting for setting in applied)
    assert any("glibc" in setting for setting in applied) == (platform.libc_ver()[0] == "glibc")


def test_other_cpus_keep_numpy_kernels(tmp_path):
    applied, disabled = tuned_in_fresh_process(tmp_path, cpuinfo("GenuineIntel", 6, AVX512_FLAGS))
    assert disabled is None
    assert not any("NPY_DISABLE_CPU_FEATURES" in setting for setting in applied)


def test_user_settings_win(tmp_path):
    zen4 = cpuinfo("AuthenticAMD", 25, AVX512_FLAGS)
    applied, disabled = tuned_in_fresh_process(tmp_path, zen4, NPY_DISABLE_CPU_FEATURES="",
                                               MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == [] and disabled == ""
    applied, disabled = tuned_in_fresh_process(tmp_path, zen4, WORKFLOW_PROCESS_TUNING="off")
    assert applied == [] and disabled is None


def test_tuning_after_numpy_import_is_refused():
    import numpy  # noqa: F401  (pytest has imported it already; the point is that it is loaded)

    with pytest.raises(RuntimeError, match="before numpy"):
        tune_process()


def test_every_job_is_tuned_before_its_command_runs(tmp_path):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    environment.pop("WORKFLOW_PROCESS_TUNING", None)
    result = subprocess.run(
        [sys.executable, "-m", "workflow_scripts", "medians", "--h5ad-path", str(tmp_path / "missing.h5ad"),
         "--output-tsv", str(tmp_path / "m.tsv"),
         "--tokenizer", json.dumps({"model_input_size": 64, "special_tokens": False, "chunk_size": 10})],
        env=environment, capture_output=True, text=True)
    assert result.returncode == 2 and "missing.h5ad" in result.stderr
    if platform.libc_ver()[0] == "glibc":
        assert "process setting: glibc mmap threshold" in result.stderr
