"""The project's small exception family.

Every error says what went wrong, where (file, row, field, key) and what to do about it.
Third-party errors (DuckDB, YAML, Great Expectations, Prefect) are wrapped at the boundary
with this context instead of leaking up raw.
"""

from __future__ import annotations


class DWatchError(Exception):
    """Base class: ``what`` happened, ``where`` (file/row/field/key), ``fix`` to apply."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.fix:
            parts.append(f"  fix: {self.fix}")
        # Messages quote paths and values from outside: no taxpayer-id shape leaves raw.
        from dwatch.masking import mask_text

        return mask_text("\n".join(parts))


class ConfigError(DWatchError):
    """A configuration value, environment variable or mapping file is missing or wrong."""


class InputError(DWatchError):
    """An input path or file cannot be read as disclosure logs at all."""


class RegistryError(DWatchError):
    """The policy registry (authorities, orders, agreements, recipients) is invalid."""


class RuleError(DWatchError):
    """A rule definition is invalid."""


class StoreError(DWatchError):
    """The DuckDB store cannot be opened, migrated or written."""
