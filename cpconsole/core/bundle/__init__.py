"""Post-mortem bundles: one .tar.gz of an incident's evidence from every node and the session, with
a SUMMARY.md on top and every secret redacted (docs/bundle.md)."""

from .archive import MAX_BYTES, Archive
from .collect import Held, Progress, bundle_name, make_bundle
from .redact import Redactor, plan_secrets
from .summary import Window

__all__ = [
    "MAX_BYTES",
    "Archive",
    "Held",
    "Progress",
    "Redactor",
    "Window",
    "bundle_name",
    "make_bundle",
    "plan_secrets",
]
