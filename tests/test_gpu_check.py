"""benchmarks/gpu_check.sh: the GPU check runs end to end on the CPU at small sizes, says where it ran, and fails
loudly. On a GPU machine the same command (without --device cpu) is the check of the CUDA paths."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # the whole check at small sizes: slides, extraction, step timing, three fits, two CV runs
def test_cpu_smoke_run_passes_and_reports_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    # this interpreter: CI keeps its environment outside the clone, where the script's .venv default is absent
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "RUNNING ON cpu (" in text and ": PASS in" in text and "[FAIL]" not in text
    res = json.loads(out.read_text())
    assert res["device_type"] == "cpu" and res["profile"] == "small" and res["failures"] == []
    ex = res["extraction"]
    assert ex["slides"] == 4 and ex["patches"] > 20
    assert ex["encoder_patches_per_s"] > 0 and ex["end_to_end_patches_per_s"] > 0
    assert ex["weights"].startswith("RANDOM weights")  # never mistaken for real features
    steps = res["training_steps"]
    assert [r["patches"] for r in steps] == [1024, 4096]
    assert all(r["fp32_ms"] > 0 and r["bf16_ms"] > 0 for r in steps)
    assert steps[1]["readme_cpu_fp32_ms"] == 58.0
    checks = res["path_checks"]
    assert set(checks) == {"fp32", "bf16", "fp16"} and "fp16_skipped_steps" in checks["fp16"]
    cv = res["cross_validation"]
    ref, dev = cv["cpu fp32 (reference)"], cv["cpu fp32"]
    assert 0.5 < ref["cindex"]["abmil"] <= 1.0
    assert dev["cindex"] == ref["cindex"]  # the same cohort, folds and seed on one CPU: the same C-index
    assert cv["reopen_max_risk_diff"] < 1e-3


def test_a_failed_check_exits_1_and_is_listed(capsys):
    gc = _module()
    assert gc.main(["--device", "cpu", "--only", "checks", "--risk-tolerance", "-1"]) == 1
    text = capsys.readouterr().out
    assert "RUNNING ON cpu" in text and "FAIL (3 check(s))" in text and "failed: fit in fp16 on cpu" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_cannot_start(capsys):
    assert _module().main(["--device", "cuda"]) == 2
    assert "cannot start" in capsys.readouterr().out
