"""Errors a user can meet: each says what happened, to what, and what to do."""

from __future__ import annotations


class CatalogcapError(Exception):
    """An error the user can fix; the CLI prints it without a traceback and exits 1."""


class SettingsError(CatalogcapError):
    """A setting has a bad value or the config file cannot be read."""


class ModelLoadError(CatalogcapError):
    """The captioning model or its adapter could not be loaded."""


class StoreError(CatalogcapError):
    """The database cannot be opened or is at an unknown schema version."""


class NotFound(CatalogcapError):
    """A caption, asset, job or adapter id does not exist."""


class PathOutsideRoot(CatalogcapError):
    """A user-supplied path resolves outside the folder it must stay in."""


class TrainingInterrupted(CatalogcapError):
    """A training round stopped before it finished (a training process died); `train --resume` continues it."""
