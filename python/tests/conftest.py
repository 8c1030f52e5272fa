"""Small fixtures shared by the test files: where things are, one tokenizer for the session, and a real
IPython shell with the extension loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

import oss_finetune.embedded  # noqa: E402,F401 - the tests load the embedded models by name, as the notebook does

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_4ROWS = SHARED_DATA / "multilingual-thinking.sample-4rows.json"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data shared beside the checkout; tests that need it skip without it."""
    if not SAMPLE_4ROWS.is_file():
        pytest.skip(
            f"the real Multilingual-Thinking rows are not beside this checkout ({SAMPLE_4ROWS.name} in ../shared/data)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded gpt-oss tokenizer; loading it takes seconds, so the whole session shares one."""
    from oss_finetune.core.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy CI machine idle-spinning threads cost a lot."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shell():
    """A real IPython InteractiveShell with `%load_ext oss_finetune` run, as a notebook's kernel has it."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "oss_finetune")
    return shell


@pytest.fixture
def decoding_batches(monkeypatch):
    """The ``adapter_rows`` of every batch the decoding path generates, in order (one entry per batch)."""
    from oss_finetune.modeling import decoding

    calls: list = []
    real = decoding.generate_batch

    def counted(*args, **kwargs):
        calls.append(kwargs.get("adapter_rows"))
        return real(*args, **kwargs)

    monkeypatch.setattr(decoding, "generate_batch", counted)
    return calls
