"""User-facing exceptions. Library code raises these; only the CLI prints them."""

from __future__ import annotations


class RecipeMigrationWarning(UserWarning):
    """A recipe written for an older eclsr was migrated (each warning names the change)."""


class EclsrError(Exception):
    """A mistake the user can fix (recipe, data file, CLI argument, checkpoint, plugin).

    The message says what is wrong, what is allowed and how to fix it. The CLI prints it
    without a traceback and exits with code 2.
    """


class RegistryError(EclsrError):
    """A component name is unknown, or registered twice."""


class PluginError(EclsrError):
    """A plugin failed to load or declares something inconsistent."""


class RecipeError(EclsrError):
    """A recipe could not be read or did not validate.

    Attributes:
        problems: one line per problem, each naming its location.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class DataError(EclsrError):
    """A data file is missing or malformed."""


class RunInterrupted(EclsrError):
    """SIGINT/SIGTERM arrived: the run stopped after its last epoch checkpoint (resumable)."""


class TuneError(EclsrError):
    """A search space, study or storage of ``eclsr tune`` is invalid, or Optuna is missing."""
