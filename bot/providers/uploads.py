"""An upload target: where a provider that can't be fetched from (a Cog server) hands its output files back.

The provider is told to PUT each file to ``<public>/<provider>/uploads/<secret>/<name>`` (see
:func:`~bot.providers.base.uploads_path`); the web server mounts that route for every provider whose client has
an :class:`UploadStore` (``client.uploads``), stores each file under its prediction, and the provider reports
our own URL for it as the output, which :meth:`UploadStore.local_path` turns back into the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from yarl import URL

from bot.errors import OutputError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UploadStore:
    """Files a provider PUT to Encore's upload target, by prediction id, under ``root``."""

    def __init__(self, root: Path, *, public_prefix: str, secret: str, max_files: int = 8) -> None:
        self.root = root
        # e.g. "https://encore.example.com/cog/uploads/<secret>/": what the provider is told to upload to.
        self.public_prefix = public_prefix if public_prefix.endswith("/") else public_prefix + "/"
        self.secret = secret  # the path segment that proves an upload comes from the provider we told
        self.max_files = max_files  # output files one prediction may upload; more are refused

    @staticmethod
    def valid_name(name: str) -> bool:
        return bool(_SAFE_NAME.match(name)) and ".." not in name

    def path_for(self, prediction_id: str, filename: str) -> Path:
        if not (self.valid_name(prediction_id) and self.valid_name(filename)):
            raise OutputError(detail="unsafe upload name")
        return self.root / prediction_id / filename

    def public_url(self, prediction_id: str, filename: str) -> str:
        return f"{self.public_prefix}{prediction_id}/{filename}"

    def local_path(self, url: str) -> Path | None:
        """The stored file behind one of our own upload URLs, or None if ``url`` is not ours."""
        if not url.startswith(self.public_prefix):
            return None
        rest = URL(url).path.rsplit("/", 2)[-2:]
        if len(rest) != 2:
            return None
        return self.path_for(rest[0], rest[1])
