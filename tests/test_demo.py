"""The demo, shrunk (`quick`): both parts run end to end and print their tables and report paths."""

from __future__ import annotations

import pytest

from survpgc.demo import run_demo
from survpgc.paper import PAPER_TABLE1_LIHC

pytestmark = pytest.mark.slow  # trains real models end to end; `make test-fast` skips it


def test_quick_demo(tmp_path, capsys):
    res = run_demo(tmp_path / "demo", n_patients=12, quick=True)
    out = capsys.readouterr().out
    assert "oracle: true risk" in out and "paper Table 1" in out and "report (b, paper)" in out
    assert res["synthetic"]["report"].is_file()
    for protocol in ("nested", "paper"):
        assert res["lihc"][protocol]["report"].is_file()
        assert (res["lihc"][protocol]["summary"]["protocol"] == protocol).all()
    assert "OPTIMISTIC" in res["lihc"]["paper"]["report"].read_text()
    o_mean, _ = res["synthetic"]["oracle"]
    assert 0.5 < o_mean <= 1.0
    assert set(PAPER_TABLE1_LIHC) >= {"coxph", "mlp:clinical"}
    # (a) is explained in its report: IG shares, localisation against the masks, two heatmaps
    interp = res["interpretation"]
    assert "SurvPGC explained" in out
    assert {"path:genomic-patch_mean", "path:clinic-patch_mean"} <= set(interp["attribution"].columns)
    assert set(interp["localisation"]["path"]) == {"clinic->patch", "genomic->patch"}
    html = res["synthetic"]["report"].read_text()
    for title in ("Attention heatmaps", "Modality attribution", "Localisation against known masks"):
        assert title in html
    assert all(c in html for c in interp["heatmap_cases"])
