"""The Hugging Face Hub and its local cache: offline switches, one bounded probe, snapshot lookups.

Nothing here waits long: the cache is read without the network, the Hub gets one request
(no retries) bounded by ``ENSEMBLE_HUB_TIMEOUT`` seconds, and a failed request is remembered
for a minute so later names do not wait again. Every outcome is appended to the caller's
``attempts`` list, which becomes the "Tried:" part of a
:class:`~ensemble.exceptions.CheckpointNotFoundError`.

Example:
    >>> attempts: list[str] = []
    >>> ask_hub(HubTarget(returned="acme/bert", repo_id="acme/bert"),  # doctest: +SKIP
    ...         switches=(OFFLINE_ENV, "HF_HUB_OFFLINE"), attempts=attempts)
    False
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ConfigError

__all__ = [
    "HUB_PREFIX",
    "HUB_TIMEOUT_ENV",
    "OFFLINE_ENV",
    "HubTarget",
    "Probe",
    "ask_hub",
    "cached_snapshot",
    "clear_hub_memo",
    "hub_timeout",
    "probe_hub",
    "probe_url",
    "split_revision",
    "valid_repo_id",
]

logger = logging.getLogger(__name__)

#: Environment variable that, when true, skips every Hugging Face Hub request.
OFFLINE_ENV = "ENSEMBLE_OFFLINE"
#: Environment variable: seconds to wait for the Hub before falling back (default 3).
HUB_TIMEOUT_ENV = "ENSEMBLE_HUB_TIMEOUT"
#: Prefix of an explicit Hub name (``hf-hub:org/repo``), as timm spells it.
HUB_PREFIX = "hf-hub:"

_DEFAULT_HUB_TIMEOUT = 3.0
_UNREACHABLE_TTL = 60.0  # seconds during which a failed Hub probe is not repeated
_TRUE = frozenset({"1", "true", "yes", "on"})

_unreachable_until = 0.0


class Probe(enum.Enum):
    """What one request to the Hub (or a weights URL) found."""

    FOUND = "found"
    MISSING = "missing"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class HubTarget:
    """Where a name lives remotely and the string to hand back when it is served from there.

    ``repo_id`` (with an optional ``revision``) for a Hub repository, or ``url`` for a plain
    weights URL (timm models without a Hub repo).

    Example:
        >>> HubTarget(returned="hf-hub:acme/vit@v2", repo_id="acme/vit", revision="v2").repo_id
        'acme/vit'
    """

    returned: str
    repo_id: str | None = None
    revision: str | None = None
    url: str | None = None


def clear_hub_memo() -> None:
    """Forget an earlier failed Hub probe (tests, or after the network comes back).

    Example:
        >>> clear_hub_memo()
    """
    global _unreachable_until
    _unreachable_until = 0.0


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _hub_disabled_reason(switches: Sequence[str]) -> str | None:
    for name in switches:
        if _env_true(name):
            return f"{name} is set"
    try:
        from huggingface_hub import constants
    except ImportError:
        return "huggingface_hub is not installed"
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "huggingface_hub is in offline mode"
    if _unreachable_until > time.monotonic():
        return "the Hub was unreachable less than a minute ago"
    return None


def hub_timeout() -> float:
    """Seconds one Hub request may take: ``$ENSEMBLE_HUB_TIMEOUT`` or 3.

    Example:
        >>> hub_timeout()  # doctest: +SKIP
        3.0
    """
    raw = os.environ.get(HUB_TIMEOUT_ENV, "").strip()
    if not raw:
        return _DEFAULT_HUB_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{HUB_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}.")
    return value


def probe_hub(repo_id: str, filename: str, revision: str | None, timeout: float
              ) -> tuple[Probe, str]:
    """One request for ``filename`` in ``repo_id``: no retries, bounded by ``timeout``.

    Example:
        >>> probe_hub("timm/resnet18.a1_in1k", "config.json", None, 3.0)  # doctest: +SKIP
        (<Probe.FOUND: 'found'>, 'found')
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=timeout)
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:  # incl. gated / private
        return Probe.MISSING, f"no accessible repository ({type(err).__name__})"
    except EntryNotFoundError:
        return Probe.MISSING, f"repository has no {filename}"
    except OfflineModeIsEnabled:
        return Probe.UNREACHABLE, "huggingface_hub is in offline mode"
    except ValueError as err:  # HFValidationError: a malformed id or revision
        return Probe.MISSING, f"invalid request ({err})"
    except Exception as err:  # any transport error (httpx / requests / socket): treat as offline
        return Probe.UNREACHABLE, f"unreachable ({type(err).__name__}: {err})"
    return Probe.FOUND, "found"


def probe_url(url: str, timeout: float) -> tuple[Probe, str]:
    """One HEAD request for a plain weights URL (timm models without a Hub repo).

    Example:
        >>> probe_url("https://example.com/weights.pth", 3.0)  # doctest: +SKIP
        (<Probe.MISSING: 'missing'>, 'HTTP 404')
    """
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # timm's own weights URL
            pass
    except urllib.error.HTTPError as err:
        return Probe.MISSING, f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return Probe.UNREACHABLE, f"unreachable ({err})"
    return Probe.FOUND, "found"


def ask_hub(target: HubTarget, *, switches: Sequence[str], attempts: list[str]) -> bool:
    """Whether the Hub (or the weights URL) serves ``target``; records the outcome in ``attempts``.

    Skipped, without a request, when one of ``switches`` (environment variables) is true,
    ``huggingface_hub`` is offline, or the Hub was unreachable less than a minute ago.
    """
    global _unreachable_until
    if target.repo_id is not None:
        repo_id, revision = target.repo_id, target.revision
        what = f"Hugging Face Hub ({repo_id})"

        def probe(timeout: float) -> tuple[Probe, str]:
            return probe_hub(repo_id, "config.json", revision, timeout)
    else:
        url = target.url or ""
        what = f"timm weights URL ({url})"

        def probe(timeout: float) -> tuple[Probe, str]:
            return probe_url(url, timeout)

    reason = _hub_disabled_reason(switches)
    if reason is not None:
        attempts.append(f"{what}: skipped ({reason})")
        return False
    timeout = hub_timeout()
    started = time.perf_counter()
    status, detail = probe(timeout)
    elapsed = time.perf_counter() - started
    if status is Probe.UNREACHABLE:
        _unreachable_until = time.monotonic() + _UNREACHABLE_TTL
    attempts.append(f"{what}: {detail} ({elapsed:.2f}s)")
    return status is Probe.FOUND


def cached_snapshot(repo_id: str, revision: str | None,
                    required: Sequence[Sequence[str]]) -> Path | None:
    """The local snapshot folder of ``repo_id`` if it holds everything needed, else None.

    ``required`` is a list of file groups; each group needs one cached file (all shards of a
    ``*.index.json``). Never touches the network.

    Example:
        >>> cached_snapshot("timm/resnet18.a1_in1k", None,  # doctest: +SKIP
        ...                 [("config.json",), ("model.safetensors",)])
        PosixPath('/home/me/.cache/huggingface/hub/models--timm--resnet18.a1_in1k/snapshots/...')
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None

    def lookup(filename: str) -> Path | None:
        try:
            hit = try_to_load_from_cache(repo_id, filename, revision=revision)
        except (ValueError, OSError):  # invalid repo id / filename, unreadable cache
            return None
        return Path(hit) if isinstance(hit, str) else None

    folder: Path | None = None
    for group in required:
        hit = next((p for p in map(lookup, group) if p is not None), None)
        if hit is None or not _shards_cached(hit, lookup):
            return None
        folder = hit.parent
    return folder


def _shards_cached(hit: Path, lookup: Callable[[str], Path | None]) -> bool:
    if not hit.name.endswith(".index.json"):
        return True
    try:
        shards = set(json.loads(hit.read_text(encoding="utf-8")).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError):
        return False
    return all(lookup(shard) is not None for shard in shards)


def split_revision(spec: str) -> tuple[str, str | None]:
    """``"org/repo@rev"`` -> ``("org/repo", "rev")``; ``"org/repo"`` -> ``("org/repo", None)``.

    Example:
        >>> split_revision("acme/vit@v2")
        ('acme/vit', 'v2')
    """
    repo_id, sep, revision = spec.partition("@")
    if sep and (not revision or "@" in revision):
        raise ConfigError(
            f"Checkpoint {spec!r} must be 'repo_id' or 'repo_id@revision' (one, non-empty)."
        )
    return repo_id, (revision or None)


def valid_repo_id(repo_id: str) -> bool:
    """Whether ``repo_id`` is a well-formed Hub repository id (no request is made).

    Example:
        >>> valid_repo_id("acme/vit"), valid_repo_id("not a repo")
        (True, False)
    """
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo_id)
    except ImportError:
        return "/" in repo_id
    except ValueError:  # HFValidationError
        return False
    return True
