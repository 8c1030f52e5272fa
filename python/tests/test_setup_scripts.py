"""scripts/check-disk.sh: set-up refuses early, and says why, when the disk cannot hold the venv."""

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fake_df(tmp_path: Path, free_kib: int) -> dict:
    """An environment whose `df` reports `free_kib` KiB available, in POSIX output format."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    df = bin_dir / "df"
    df.write_text(
        "#!/bin/sh\n"
        "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
        f"echo '/dev/x 100000000 1 {free_kib} 99% /'\n"
    )
    df.chmod(df.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def check(tmp_path, env, need_gib="7"):
    return subprocess.run(
        ["bash", str(ROOT / "scripts/check-disk.sh"), str(tmp_path), need_gib, "the venv"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_too_little_space_is_refused_with_the_figures(tmp_path):
    result = check(tmp_path, fake_df(tmp_path, 300 * 1024))
    assert result.returncode == 1
    assert "only 300 MiB free" in result.stderr
    assert "the venv needs about 7 GiB" in result.stderr
    assert str(tmp_path) in result.stderr


def test_enough_space_passes_silently(tmp_path):
    result = check(tmp_path, fake_df(tmp_path, 8 * 1024 * 1024))
    assert result.returncode == 0 and result.stderr == ""


def test_setup_runs_the_check_before_creating_the_venv():
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert "check-disk.sh" in setup
    assert setup.index("check-disk.sh") < setup.index("python3 -m venv .venv")
