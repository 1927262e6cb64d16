"""Logging set up once per process, at the entry point."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka reports every transient coordinator hiccup at ERROR, and Alembic narrates its
    # plugins and context at INFO; our own lines say what matters.
    quieter = max(logging.getLevelName(level), logging.WARNING)
    for noisy in ("aiokafka", "alembic"):
        logging.getLogger(noisy).setLevel(quieter)
