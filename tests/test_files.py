"""The one atomic-write helper every writer uses."""

from __future__ import annotations

import pytest

from survpgc.files import atomic_write, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_only_when_complete(tmp_path):
    dest = tmp_path / "sub" / "out.txt"
    atomic_write_text(dest, "first")
    assert dest.read_text() == "first"

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(dest, failing)
    assert dest.read_text() == "first"  # the old file survives
    assert [p.name for p in dest.parent.iterdir()] == ["out.txt"]  # no temporary file left behind
    atomic_write_bytes(dest, b"second")
    assert dest.read_bytes() == b"second"


def test_resolve_device_rule(monkeypatch):
    import torch

    from survpgc.devices import resolve_device
    from survpgc.errors import InputError

    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(InputError, match="invalid device"):
        resolve_device("gpu-please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda:1")  # torchrun's local rank picks the GPU
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(InputError, match="2 GPU"):  # a rank beyond the visible GPUs is an error, not a fallback
        resolve_device("auto")


def test_atomic_write_respects_the_umask(tmp_path):
    import os
    import stat

    from survpgc.files import atomic_write_text

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # like open(..., "w"), not mkstemp's 0600
        os.umask(0o077)
        q = atomic_write_text(tmp_path / "b.txt", "x")
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_same_setting_rules():
    from survpgc.files import same_setting

    assert same_setting(20.0, 20) and same_setting(0.5, 0.5 + 1e-9) and not same_setting(0.5, 0.25)
    assert same_setting([0.485, 0.456], (0.485, 0.456)) and not same_setting([1, 2], [1, 2, 3])
    assert not same_setting(True, 1) and not same_setting(1, True) and same_setting(False, False)
    assert same_setting("uni", "uni") and not same_setting("uni", "conch") and not same_setting(None, 0)
