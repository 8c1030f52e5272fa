"""The tutorial's story on the embedded default: the base reasons in English whatever language is asked
for; the tutorial's LoRA run (embedded.TUTORIAL_SETTINGS) teaches it to reason in the requested one.

Held-out problems only. The base is built once into the cache (OSS_FINETUNE_CACHE or
~/.cache/oss-finetune) and reused by later runs; the first run on a machine pays for the build.
"""

import copy

import pytest

from oss_finetune.core.data import prepare, read_rows
from oss_finetune.embedded import TUTORIAL_SETTINGS
from oss_finetune.modeling.model import apply_lora, load_model
from oss_finetune.training.language import reasoning_language_rate
from oss_finetune.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EVALUATION = TUTORIAL_SETTINGS["evaluation"]

# Floors with margin under what docs/embedded-default.md records for these settings: the tutorial's run
# reaches 0.98 in the language and 0.98 well-formed, and LoRA seeds 1 and 2 gave 0.90 / 0.88 and
# 0.98 / 0.98. A CPU with other float rounding can flip a few greedy generations, as a seed does, so
# the well-formed floor sits under the lowest seed seen rather than at the 0.9 aimed at.
BASE_WELL_FORMED_AT_LEAST = 0.9
BASE_IN_LANGUAGE_AT_MOST = 0.05
TRAINED_WELL_FORMED_AT_LEAST = 0.85
TRAINED_IN_LANGUAGE_AT_LEAST = 0.8


@pytest.fixture(scope="module")
def base():
    return load_model(dict(TUTORIAL_SETTINGS["model"], device="cpu"))


@pytest.fixture(scope="module")
def heldout():
    return [r for r in read_rows(EVALUATION["heldout"]) if r["reasoning_language"] != "English"]


def _rate(model, tokenizer, rows, use_adapter=True):
    return reasoning_language_rate(
        model,
        tokenizer,
        rows,
        EVALUATION["effort"],
        max_new_tokens=EVALUATION["max_new_tokens"],
        date=EVALUATION["date"],
        batch_size=len(rows),
        use_adapter=use_adapter,
    )


@pytest.mark.slow
def test_lora_teaches_the_base_to_reason_in_the_requested_language(base, heldout, tmp_path):
    before = _rate(base.model, base.tokenizer, heldout)
    assert before.non_english_requests == len(heldout) == 48
    assert before.well_formed >= BASE_WELL_FORMED_AT_LEAST, before.summary()
    assert before.in_language <= BASE_IN_LANGUAGE_AT_MOST, before.summary()
    assert before.identified.get("English", 0) >= 0.8 * len(heldout), before.summary()

    settings = copy.deepcopy(TUTORIAL_SETTINGS)
    prepared = prepare(settings["data"], base.tokenizer)
    model = apply_lora(base.model, settings["lora"], seed=0)
    trainer = Trainer(
        model,
        prepared.examples,
        dict(settings["training"], save_steps=10_000, output_dir=str(tmp_path)),
        handle_sigint=False,
    )
    # The run folder is not what this test is about; keep the adapter in memory only.
    trainer.save_checkpoint = lambda: None
    result = trainer.train()
    assert result.status == "completed"

    after = _rate(model, base.tokenizer, heldout)
    assert after.well_formed >= TRAINED_WELL_FORMED_AT_LEAST, after.summary()
    assert after.in_language >= TRAINED_IN_LANGUAGE_AT_LEAST, after.summary()
    # Every language is learnt, not only the easiest ones.
    assert min(after.per_language.values()) >= 0.5, after.summary()
    # The adapter is what changed it: switched off, the same model reasons in English again.
    off = _rate(model, base.tokenizer, heldout[::4], use_adapter=False)
    assert off.in_language <= BASE_IN_LANGUAGE_AT_MOST, off.summary()
    assert off.identified.get("English", 0) >= 0.8 * off.requests, off.summary()
