"""Output folders shared safely (survpgc.locks), fault points (survpgc.faults) and the CLI's exit codes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

import survpgc.cli as cli
from survpgc.errors import BusyError, InputError, Interrupted
from survpgc.files import atomic_write
from survpgc.locks import claim, folder_lock, output_dir, sweep_temporaries

PY = sys.executable


def _hold_in_subprocess(code: str) -> subprocess.Popen:
    """Start a Python process that runs ``code`` (which takes a lock), prints 'held' and sleeps."""
    proc = subprocess.Popen(
        [PY, "-c", textwrap.dedent(code) + "\nprint('held', flush=True)\nimport time; time.sleep(60)\n"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


# ---------------------------------------------------------------- output_dir


def test_output_dir_creates_and_keeps_written_folder(tmp_path):
    out = tmp_path / "a" / "b"
    with output_dir(out) as root:
        assert root.is_dir()
        (root / "x.txt").write_text("x")
    assert (out / "x.txt").read_text() == "x"


def test_output_dir_removes_folder_it_created_when_command_fails_at_once(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError), output_dir(out):
        with folder_lock(out):  # lock files are bookkeeping, not output
            pass
        claim(out, "slide-1").release()
        raise RuntimeError("bad config")
    assert not out.exists()


def test_output_dir_keeps_existing_folder_and_written_files_on_failure(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError), output_dir(existing):
        raise RuntimeError("x")
    assert existing.is_dir()
    new = tmp_path / "new"
    with pytest.raises(RuntimeError), output_dir(new):
        (new / "done.h5").write_bytes(b"1")
        raise RuntimeError("x")
    assert (new / "done.h5").is_file()


def test_output_dir_unwritable_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match=r"cannot write to --out .*file\.txt/sub"):
        with output_dir(blocker / "sub"):
            pytest.fail("the block must not run")
    with pytest.raises(InputError, match="exists and is not a folder"):
        with output_dir(blocker, option="--out"):
            pass


def test_output_dir_unwritable_permission(tmp_path, monkeypatch):
    real = Path.write_bytes

    def deny(self, data):
        if self.name.startswith(".survpgc-write-test"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", deny)
    with pytest.raises(InputError, match=r"cannot write to --run-dir .*: Permission denied"):
        with output_dir(tmp_path / "r", option="--run-dir"):
            pass


# ---------------------------------------------------------------- folder_lock and claim


def test_folder_lock_refuses_second_process_naming_its_pid(tmp_path):
    proc = _hold_in_subprocess(
        f"""
        from survpgc.locks import folder_lock
        cm = folder_lock({str(tmp_path)!r}); cm.__enter__()
        """
    )
    try:
        with pytest.raises(BusyError, match=rf"run directory .* is in use by pid {proc.pid} on \S+ \(`.*`, since "):
            with folder_lock(tmp_path, what="run directory"):
                pytest.fail("the lock must not be granted")
    finally:
        proc.kill()
        proc.wait()
    with folder_lock(tmp_path, wait=5):  # released with its process, even by SIGKILL
        pass


def test_folder_lock_waits_when_asked(tmp_path):
    proc = subprocess.Popen(
        [PY, "-c", f"from survpgc.locks import folder_lock\nimport time\nwith folder_lock({str(tmp_path)!r}):\n"
         "    print('held', flush=True); time.sleep(1.5)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(BusyError):
        with folder_lock(tmp_path, wait=0):
            pass
    with folder_lock(tmp_path, wait=30):
        pass
    proc.wait()


def test_claims_split_work_between_processes_and_die_with_them(tmp_path):
    proc = _hold_in_subprocess(
        f"""
        from survpgc.locks import claim
        c = claim({str(tmp_path)!r}, "slide-a")
        assert c is not None
        """
    )
    try:
        assert claim(tmp_path, "slide-a") is None  # held by the other process
        b = claim(tmp_path, "slide-b")
        assert b is not None
        with b:
            assert claim(tmp_path, "slide-b") is None  # a second claim, even in this process, is refused
        again = claim(tmp_path, "slide-b")
        assert again is not None
        again.release()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    c = claim(tmp_path, "slide-a")
    assert c is not None
    c.release()


def test_claim_names_are_file_safe(tmp_path):
    c = claim(tmp_path, "snn:genomic/fold0")
    assert c is not None and c.path.parent == tmp_path / ".claims" and "/" not in c.path.name
    c.release()


# ---------------------------------------------------------------- sweep


def test_sweep_temporaries_after_a_kill(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".A.h5.x1y2.tmp", tmp_path / ".B.h5.zz.tmp", tmp_path / "sub" / ".C.pt.q.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = [tmp_path / "A.h5", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in keep:
        p.write_bytes(b"ok")
    assert sweep_temporaries(tmp_path, names=["A.h5"]) == [stale[0]]
    assert sorted(sweep_temporaries(tmp_path)) == [stale[1]]
    assert sweep_temporaries(tmp_path, recursive=True) == [stale[2]]
    assert all(p.exists() for p in keep)
    assert sweep_temporaries(tmp_path / "absent") == []


# ---------------------------------------------------------------- fault points


def _killed_at(point: str, env_value: str | None, tmp_path: Path) -> tuple[int, list[str]]:
    code = textwrap.dedent(
        f"""
        from survpgc.faults import fault_point
        for i in range(3):
            print(i, flush=True)
            fault_point({point!r})
        print("end", flush=True)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "SURVPGC_FAULT"}
    if env_value is not None:
        env["SURVPGC_FAULT"] = env_value
    r = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    return r.returncode, r.stdout.split()


def test_fault_point_kills_only_where_named(tmp_path):
    assert _killed_at("h5-write", None, tmp_path) == (0, ["0", "1", "2", "end"])
    assert _killed_at("h5-write", "checkpoint", tmp_path) == (0, ["0", "1", "2", "end"])
    assert _killed_at("h5-write", "h5-write", tmp_path) == (-signal.SIGKILL, ["0"])
    assert _killed_at("h5-write", "h5-write@2", tmp_path) == (-signal.SIGKILL, ["0", "1"])


def test_atomic_write_killed_midway_leaves_only_a_sweepable_temporary(tmp_path):
    code = textwrap.dedent(
        f"""
        from survpgc.faults import fault_point
        from survpgc.files import atomic_write
        def write(t):
            t.write_bytes(b"half")
            fault_point("h5-write")
        atomic_write({str(tmp_path / "A.h5")!r}, write)
        """
    )
    r = subprocess.run([PY, "-c", code], env={**os.environ, "SURVPGC_FAULT": "h5-write"})
    assert r.returncode == -signal.SIGKILL
    assert not (tmp_path / "A.h5").exists()
    assert len(sweep_temporaries(tmp_path, names=["A.h5"])) == 1
    atomic_write(tmp_path / "A.h5", lambda t: t.write_bytes(b"whole"))
    assert [p.name for p in tmp_path.iterdir()] == ["A.h5"]


# ---------------------------------------------------------------- CLI exit codes


@pytest.fixture
def tiny_app(monkeypatch):
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    def go(what: str) -> None:
        if what == "disk-full":
            raise OSError(errno.ENOSPC, "No space left on device", "/data/out/TCGA-1.h5")
        if what == "denied":
            raise PermissionError(errno.EACCES, "Permission denied", "/data/out")
        if what == "ctrl-c":
            raise KeyboardInterrupt
        if what == "interrupted":
            raise Interrupted("3 of 10 slides finished in /data/out; rerun the same command to resume")
        if what == "failed-items":
            raise typer.Exit(1)
        if what == "ours":
            raise InputError("cohort.csv line 4: time -3 is negative")

    @app.command()
    def other() -> None:
        pass

    monkeypatch.setattr(cli, "app", app)
    return app


@pytest.mark.parametrize(
    ("what", "code", "line"),
    [
        ("disk-full", 2, "error: No space left on device: /data/out/TCGA-1.h5"),
        ("denied", 2, "error: Permission denied: /data/out"),
        ("ours", 2, "error: cohort.csv line 4: time -3 is negative"),
        ("ctrl-c", 130, "interrupted: finished outputs are kept and nothing is half-written; rerun the same command"),
        ("interrupted", 130, "interrupted: 3 of 10 slides finished in /data/out; rerun the same command to resume"),
        ("failed-items", 1, ""),
    ],
)
def test_cli_main_exit_codes_and_one_line_messages(tiny_app, monkeypatch, capsys, what, code, line):
    monkeypatch.setattr(sys, "argv", ["survpgc", "go", what])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if line:
        assert err.strip().splitlines() == [err.strip().splitlines()[0]]  # one line
        assert err.strip().startswith(line)


def test_cli_synth_unwritable_out_is_refused_up_front(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    monkeypatch.setattr(sys, "argv", ["survpgc", "synth", "--out", str(blocker / "c"), "--no-slides"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: cannot write to --out {blocker / 'c'}: Not a directory"


def test_cli_failing_command_leaves_no_empty_out(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    monkeypatch.setattr(sys, "argv", ["survpgc", "study", "templates", "--cohort", "no-such-cohort", "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert "no-such-cohort" in capsys.readouterr().err
    assert not out.exists()
