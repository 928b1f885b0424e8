"""asyncssh, imported once for the whole package with its one known, harmless warning silenced.

cryptography 51 deprecates DSA (its removal is announced), and asyncssh 2.24 names the DSA key
classes in its type aliases and key code, so every verb that touches a node printed ten
`CryptographyDeprecationWarning: DSA is deprecated` lines on the operator's terminal. They say
nothing the operator can act on. The filter is exact: that message, that category, raised from
asyncssh's own modules — any other warning still shows.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings(
    "ignore", message="DSA is deprecated", category=CryptographyDeprecationWarning, module=r"asyncssh(\.|$)"
)

import asyncssh  # noqa: E402 — after the filter, on purpose

__all__ = ["asyncssh"]
