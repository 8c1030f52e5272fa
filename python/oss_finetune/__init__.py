"""oss-finetune: fine-tune GPT-OSS models with LoRA from a notebook, and see what they learn."""

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "oss-finetune"}]


def load_ipython_extension(ipython):
    """`%load_ext oss_finetune`: the %oss_finetune magics, their tab completion and the widgets' comm."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)


def register_magics(ipython):
    """The %oss_finetune magics alone, as the oss-finetune kernel registers them when it starts; the side
    panel's channel comes with `%load_ext oss_finetune` or the first magic."""
    from .notebook.magics import register

    register(ipython)
