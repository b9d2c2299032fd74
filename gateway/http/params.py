"""Parameters that several routes declare alike."""

from __future__ import annotations

from fastapi import Path

from contract.channels import CHANNEL_NAME_PATTERN

CHANNEL_PATH = Path(
    description="The channel: 1-64 of A-Z a-z 0-9 _ - . : (narrowed by SSE_CHANNEL_PATTERN).",
    # Documented, not enforced here: routes check the name themselves, for their 400s.
    json_schema_extra={"pattern": CHANNEL_NAME_PATTERN},
)
"""The ``{channel}`` of ``/channels/{channel}/...``."""
