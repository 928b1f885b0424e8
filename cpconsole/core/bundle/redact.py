"""Secrets out of everything a bundle holds: the values the profile knows to be secret (the API
key, env values and webhook addresses whose names say so) wherever they appear, and the shapes a
secret has in a command line or a header whatever its value."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..plan import LaunchPlan

REDACTED = "[redacted]"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
MIN_SECRET = 4  # shorter values ("1", "on") would blank ordinary text; no real secret is that short
_SHAPES = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
    re.compile(r"(--api-key[= ]\s*)[^\s\"']+"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)


def plan_secrets(plan: LaunchPlan, api_key: str | None) -> set[str]:
    """What this deployment holds secret: its API key, secret-named env values of every process
    and node, and the notify webhooks' addresses (a Slack-style URL is its own credential)."""
    found = {api_key} if api_key else set()
    pairs = [*(pair for p in plan.processes for pair in p.env), *(pair for n in plan.nodes for pair in n.env)]
    found |= {value for name, value in pairs if SECRET_NAME.search(name)}
    found |= {hook.url for hook in plan.notify.webhooks}
    return {s for s in found if len(s) >= MIN_SECRET}


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # the longest first: a secret that contains another is replaced whole
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for shape in _SHAPES:
            text = shape.sub(lambda m: m.group(1) + REDACTED, text)
        return text
