"""User-facing errors: every bad input names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """An error caused by the user's input (data, task file, CLI flags).

    The CLI prints it without a traceback and exits with status 2.

    Args:
        message: what is wrong.
        file: the file (or directory) that holds the bad input, if any.
        field: the column, key or flag that is wrong, if any.
        fix: one sentence telling the user how to fix it.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, field: str | None = None,
                 fix: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}")
        if self.field:
            parts.append(f"field '{self.field}'")
        where = ": ".join(parts)
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text
