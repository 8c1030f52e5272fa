"""oss-finetune: fine-tune GPT-OSS models with LoRA from a notebook, and see what they learn."""

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "oss-finetune"}]
