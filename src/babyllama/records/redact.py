"""Secrets never reach a run folder, a tracker or the terminal in clear.

Three nets, because a secret can arrive three ways:
  * by name: a field or flag called *token*, *api_key*, *password*, *secret* ... gets a placeholder, whatever its value
    (the Hugging Face style: ``hub_token=<HUB_TOKEN>``);
  * by shape: Hugging Face tokens (``hf_...``), passwords in URIs (``https://user:<PASSWORD>@host``) and
    ``token=...`` query parameters;
  * by value: the values of secret environment variables (HF_TOKEN, WANDB_API_KEY, MLFLOW_TRACKING_PASSWORD, any
    *_TOKEN / *_API_KEY / *_PASSWORD / *_SECRET) and of stored credentials (the Hugging Face token file, ~/.netrc)
    wherever they appear, e.g. pasted into a path or a command line.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Iterable, Optional

# Key names that hold secrets. "tokenizer" and "max_tokens" are not secrets: the word must stand alone or at the end.
SECRET_KEY = re.compile(r"(^|[_.\-])(token|api_?key|apikey|password|passwd|secret|secret_key|credentials?|auth)$",
                        re.IGNORECASE)
# Environment variables whose values are secrets.
SECRET_ENV = re.compile(r"(TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|PASSWORD|PASSWD|SECRET|CREDENTIALS?)(_[A-Z0-9]+)?$",
                        re.IGNORECASE)
NOT_SECRET_ENV = {"TOKENIZERS_PARALLELISM"}
MIN_SECRET_LENGTH = 6  # shorter env values ("1", "true") would redact ordinary text

HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{16,}\b")
URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+):(?P<password>[^@\s/]+)@")
QUERY_SECRET = re.compile(r"(?P<head>[?&](?:[A-Za-z_]*token|api_?key|apikey|password|secret|sig)=)(?P<value>[^&\s#\"']+)",
                          re.IGNORECASE)


def placeholder(key: str) -> str:
    """The placeholder for a secret field: hub_token -> <HUB_TOKEN> (as transformers prints it)."""
    return f"<{re.sub(r'[^A-Za-z0-9]+', '_', key).strip('_').upper() or 'SECRET'}>"


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(str(key)))


@functools.lru_cache(maxsize=1)
def stored_credentials() -> tuple[tuple[str, str], ...]:
    """Secrets kept in files rather than the environment: the Hugging Face token (`hf auth login`) and the
    passwords in ~/.netrc (where `wandb login` keeps its API key). Read once per process."""
    found = []
    try:
        from huggingface_hub import get_token

        token = get_token()
        if token:
            found.append((token, "<HF_TOKEN>"))
    except Exception:  # no hub library or an unreadable token file: nothing to hide from there
        pass
    try:
        import netrc

        for host, (_, _, password) in netrc.netrc().hosts.items():
            if password and len(password) >= MIN_SECRET_LENGTH:
                found.append((password, "<NETRC_PASSWORD>"))
    except (OSError, netrc.NetrcParseError):
        pass
    return tuple(found)


def env_secrets(environ: Optional[dict] = None) -> dict[str, str]:
    """{value: placeholder} for the secret environment variables set now (and the stored credentials)."""
    environ = os.environ if environ is None else environ
    found = dict(stored_credentials()) if environ is os.environ else {}
    for name, value in environ.items():
        if name in NOT_SECRET_ENV or not SECRET_ENV.search(name) or len(value) < MIN_SECRET_LENGTH:
            continue
        found[value] = f"<{name.upper()}>"
    return found


def redact_text(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Replace every secret found by shape or by value in free text."""
    if not isinstance(text, str) or not text:
        return text
    secrets = env_secrets()
    for value in extra_secrets:
        if value and len(value) >= MIN_SECRET_LENGTH:
            secrets.setdefault(value, "<SECRET>")
    # Longest first, so a secret that contains another is replaced whole.
    for value in sorted(secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, secrets[value])
    text = URI_PASSWORD.sub(lambda m: f"{m.group('head')}:<PASSWORD>@", text)
    text = QUERY_SECRET.sub(lambda m: f"{m.group('head')}<{'SECRET'}>", text)
    return HF_TOKEN.sub("<HF_TOKEN>", text)


def redact(obj: Any, extra_secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like object with secret fields replaced by placeholders and secrets removed from strings."""
    extra = tuple(extra_secrets)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if is_secret_key(key) and value not in (None, "", [], {}) and not _is_placeholder(value):
                out[key] = placeholder(str(key))
            else:
                out[key] = redact(value, extra)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, extra) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj, extra)
    return obj


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret flags (--hub_token X, --hub_token=X) and secret text replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(placeholder(flag))
            hide_next = False
            continue
        if arg.startswith("--") and "=" in arg:
            flag, _, value = arg[2:].partition("=")
            out.append(f"--{flag}={placeholder(flag)}" if is_secret_key(flag) and value else redact_text(arg))
            continue
        if arg.startswith("--") and is_secret_key(arg[2:]):
            flag, hide_next = arg[2:], True
        out.append(redact_text(arg))
    return out


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("<") and value.endswith(">")
