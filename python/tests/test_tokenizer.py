"""The gpt-oss tokenizer comes from the package, without the network.

Read as a manual: `load_tokenizer()` gives the real tokenizer, the constants are Harmony's special
token ids, and `use_offline_encodings()` makes openai-harmony and tiktoken work offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from oss_finetune.core import tokenizer as tk


def test_embedded_tokenizer_is_gpt_oss(tokenizer):
    # 200,019 entries: o200k's 199,998 plus Harmony's specials and reserved ids.
    assert len(tokenizer) == 200019
    assert tokenizer.eos_token == "<|return|>"
    assert tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.parametrize("name, token_id", sorted(tk.SPECIAL_TOKENS.items(), key=lambda kv: kv[1]))
def test_special_token_ids(tokenizer, name, token_id):
    assert tokenizer.convert_tokens_to_ids(name) == token_id
    assert tokenizer.convert_ids_to_tokens(token_id) == name


def test_constants_spell_the_ids():
    assert (tk.START_OF_TEXT, tk.END_OF_TEXT, tk.RETURN, tk.CONSTRAIN, tk.CHANNEL) == (
        199998,
        199999,
        200002,
        200003,
        200005,
    )
    assert (tk.START, tk.END, tk.MESSAGE, tk.CALL, tk.END_OF_PROMPT) == (200006, 200007, 200008, 200012, 200018)
    # The embedding is larger than the tokenizer: every id the tokenizer makes fits in it.
    assert tk.VOCAB_SIZE == 201088


def test_special_token_ids_helper(tokenizer):
    assert tk.special_token_ids(tokenizer) == tk.SPECIAL_TOKENS


def test_text_round_trips(tokenizer):
    text = "Le rapide renard brun saute par-dessus le chien paresseux. ¿Qué tal? 日本語"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert max(ids) < tk.FIRST_SPECIAL_ID


def test_load_is_cached(tokenizer):
    assert tk.load_tokenizer() is tokenizer
    assert tk.load_tokenizer("embedded:tiny") is tokenizer


def test_unknown_embedded_name():
    with pytest.raises(ValueError, match="embedded:tiny"):
        tk.load_tokenizer("embedded:huge")


def test_local_folder_loads_its_own_tokenizer(tmp_path, tokenizer):
    # A folder as `save_pretrained` writes it (here: a copy of the embedded files) goes through AutoTokenizer.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tk.tokenizer_dir() / name, tmp_path / name)
    own = tk.load_tokenizer(str(tmp_path))
    assert own is not tokenizer
    assert own.encode("<|start|>user", add_special_tokens=False) == [tk.START, 1428]


def test_missing_assets_say_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(tk, "ASSETS_DIR", tmp_path)
    with pytest.raises(tk.TokenizerAssetsMissing, match="npm run build:python-assets"):
        tk.tokenizer_dir()
    with pytest.raises(tk.TokenizerAssetsMissing, match="reinstall"):
        tk.o200k_path()


def test_o200k_file_is_the_published_one():
    import hashlib

    digest = hashlib.sha256(tk.o200k_path().read_bytes()).hexdigest()
    assert digest == "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def test_offline_encodings_for_openai_harmony_and_tiktoken(tmp_path):
    # A fresh interpreter with neither variable set, and no network needed.
    code = (
        "from oss_finetune.core.tokenizer import use_offline_encodings\n"
        f"env = use_offline_encodings({str(tmp_path)!r})\n"
        "import openai_harmony as oh, tiktoken, json\n"
        "enc = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)\n"
        "base = tiktoken.get_encoding('o200k_base')\n"
        "print(json.dumps([env, enc.encode('<|start|>user', allowed_special='all'), base.encode('hello world')]))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOKEN_")}
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    env, harmony_ids, base_ids = json.loads(out.stdout)
    assert env["TIKTOKEN_ENCODINGS_BASE"] == str(tk.ASSETS_DIR)
    assert env["TIKTOKEN_CACHE_DIR"] == str(tmp_path)
    assert harmony_ids == [tk.START, 1428]
    assert base_ids == [24912, 2375]


def test_offline_encodings_respect_user_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", "/somewhere/else")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    env = tk.use_offline_encodings()
    assert env == {"TIKTOKEN_ENCODINGS_BASE": "/somewhere/else", "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    assert list(tmp_path.iterdir()) == []
