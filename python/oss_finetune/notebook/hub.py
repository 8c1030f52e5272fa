"""Whether a hub model can be fetched, found out in one request before anything loads.

Without this, a kernel with no network spends about half a minute in the hub client's retries
(each file, five times, with back-off) and then shows transformers' generic OSError. One HEAD
request without retries tells at once, and the error says what to do instead.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from ..modeling import sources

FIELD = "model.name_or_path"
# Long enough for a slow proxy, short against the retries it replaces.
PROBE_SECONDS = 5.0


class HubUnreachableError(UserError, RuntimeError):
    """A hub model that cannot be fetched from here; the message says how to load it anyway."""

    path = FIELD


def is_hub_id(name: str) -> bool:
    """A hub id (owner/name), not an embedded model or a folder on this machine."""
    if sources.is_embedded(name) or Path(name).expanduser().is_dir():
        return False
    return not name.startswith(("/", "./", "../", "~")) and "\\" not in name and name.count("/") <= 1


def in_cache(name: str) -> bool:
    """Whether the hub cache holds the model's config.json (downloaded once, loadable with HF_HUB_OFFLINE=1)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - a malformed id is simply not cached
        return False


def unreachable_reason(endpoint: str) -> str | None:
    """None when the hub answers at all (any HTTP status); else why not, in a few words."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=PROBE_SECONDS, follow_redirects=False)
    except Exception as error:  # noqa: BLE001 - DNS, refused, timeout, proxy: all mean "cannot reach"
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return None


def check(name: str) -> None:
    """Raise HubUnreachableError when ``name`` is a hub id that this kernel cannot fetch; else return."""
    if not is_hub_id(name):
        return
    from huggingface_hub import constants

    local = f"`%oss_finetune load --model /path/to/{name.rsplit('/', 1)[-1]}`"
    no_hub = "embedded:tiny-base needs no hub"
    if constants.HF_HUB_OFFLINE:
        if in_cache(name):
            return
        raise HubUnreachableError(
            f"{FIELD}: {name} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is "
            f"set, so nothing is downloaded — give a local folder that holds the checkpoint ({local}), or download "
            f"it once where the hub is reachable; {no_hub}"
        )
    reason = unreachable_reason(constants.ENDPOINT)
    if reason is None:
        return
    where = f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached from this kernel ({reason})"
    if in_cache(name):
        raise HubUnreachableError(
            f"{FIELD}: {where}, but {name} is in its cache — restart the kernel with HF_HUB_OFFLINE=1 in its "
            f"environment (or run `%env HF_HUB_OFFLINE=1` first thing in a fresh kernel) to load it from there, "
            f"or give a local folder ({local})"
        )
    raise HubUnreachableError(
        f"{FIELD}: {where}, and {name} is not in its cache — give a local folder that holds the checkpoint "
        f"({local}), or use a machine where the hub is reachable once and HF_HUB_OFFLINE=1 with its cache; {no_hub}"
    )
