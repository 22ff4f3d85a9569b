"""The ``eclsr`` command line: one module per command group; nothing else imports this wing."""

from __future__ import annotations

from eclsr.cli.main import main

__all__ = ["main"]
