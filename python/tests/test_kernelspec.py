"""The oss-finetune kernelspec: `%oss_finetune` works from the first cell of a fresh kernel and after a
restart, with no `%load_ext` (a real ipykernel started from the installed kernelspec by jupyter_client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oss_finetune import kernelspec

jupyter_client = pytest.importorskip("jupyter_client")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402


def run(client, code: str) -> tuple[str, str]:
    """A cell's status and everything it printed or displayed."""
    shown: list[str] = []

    def keep(msg: dict) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            shown.append(content["text"])
        elif msg["msg_type"] in ("display_data", "execute_result"):
            shown.append(content["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            shown.append(f"{content['ename']}: {content['evalue']}")

    reply = client.execute_interactive(code, timeout=120, output_hook=keep)
    return reply["content"]["status"], "".join(shown)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    folder = kernelspec.install(prefix=str(prefix))
    return prefix / "share" / "jupyter" / "kernels", folder


def test_the_kernel_has_the_magics_from_its_start_and_after_a_restart(installed, tmp_path):
    kernels, _ = installed
    manager = KernelManager(
        kernel_name=kernelspec.NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        status, shown = run(client, "%oss_finetune help")
        assert status == "ok" and shown.startswith("%oss_finetune SUBCOMMAND"), shown
        # The start line leaves no names behind, and a notebook's own %load_ext stays silent.
        assert run(client, "%who") == ("ok", "Interactive namespace is empty.\n")
        assert run(client, "%load_ext oss_finetune") == ("ok", "")
        manager.restart_kernel(now=True)
        client.wait_for_ready(timeout=120)
        status, shown = run(client, "%oss_finetune status")
        assert status == "ok" and shown.startswith("model: not loaded"), shown
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_installed_spec_runs_this_interpreter_and_registers_the_magics(installed):
    _, folder = installed
    spec = json.loads((Path(folder) / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["display_name"] == kernelspec.DISPLAY_NAME
    assert spec["argv"][-1] == "--IPKernelApp.exec_lines=__import__('oss_finetune').register_magics(get_ipython())"
    assert kernelspec.is_current(folder) and not kernelspec.is_current(folder, "/other/python")


def test_the_command_line_installs_and_checks(tmp_path):
    env_dir = tmp_path / "jupyter"
    command = [sys.executable, "-m", "oss_finetune", "kernel", "--name", "oss-finetune-cli-test"]
    # JUPYTER_DATA_DIR is where a --user install goes; an empty one has no such kernel yet.
    env = {**os.environ, "JUPYTER_DATA_DIR": str(env_dir), "JUPYTER_PATH": str(env_dir)}
    assert subprocess.run([*command, "--check"], env=env, capture_output=True).returncode == 1
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "installed the oss-finetune-cli-test kernel in " in done.stdout
    assert (env_dir / "kernels" / "oss-finetune-cli-test" / "kernel.json").is_file()
    assert subprocess.run([*command, "--check"], env=env, capture_output=True).returncode == 0


def test_the_help_reads():
    for argv in (["--help"], ["kernel", "--help"]):
        done = subprocess.run([sys.executable, "-m", "oss_finetune", *argv], capture_output=True, text=True)
        assert done.returncode == 0 and "kernel" in done.stdout, done.stderr
