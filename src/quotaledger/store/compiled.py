"""Core statements compiled once per dialect and run on the driver's own cursor.

The ledger's charge runs three small statements per request; through `Connection.execute`
SQLAlchemy's per-execution work (context, parameter processing, result wrapping) costs
more than SQLite itself. The statements stay SQLAlchemy Core (one definition for SQLite and
PostgreSQL, compiled by SQLAlchemy); only their execution skips that layer, inside the
same connection and transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class _Form:
    sql: str
    names: tuple[str, ...] | None  # positional parameter order (qmark), or None (named)
    defaults: dict[str, Any]  # values SQLAlchemy bound itself, such as the 1 in `+ 1`


class CompiledStatement:
    def __init__(self, statement: ClauseElement, **compile_options: Any) -> None:
        self._statement = statement
        self._options = compile_options
        self._forms: dict[str, _Form] = {}

    def execute(self, connection: Connection, params: dict[str, Any]) -> Any:
        """Run with `params` on `connection`'s DBAPI cursor; returns that cursor."""
        sql, args = self.bind(connection.dialect, params)
        cursor = connection.connection.cursor()
        cursor.execute(sql, args)
        return cursor

    def bind(self, dialect: Dialect, params: dict[str, Any]) -> tuple[str, Any]:
        """The SQL for `dialect` and the driver's arguments for `params`."""
        form = self._forms.get(dialect.name) or self._compile(dialect)
        if form.defaults:
            params = {**form.defaults, **params}
        names = form.names
        if names is None:
            return form.sql, params
        if len(names) == 1:  # a lookup by one key, the hottest case
            return form.sql, (params[names[0]],)
        return form.sql, tuple([params[name] for name in names])

    def _compile(self, dialect: Dialect) -> _Form:
        compiled = self._statement.compile(dialect=dialect, **self._options)
        assert isinstance(compiled, SQLCompiler)
        defaults = {
            name: value
            for name, value in compiled.params.items()
            if value is not None and not _is_symbol(value)
        }
        names = tuple(compiled.positiontup or ()) if compiled.positional else None
        form = _Form(compiled.string, names, defaults)
        self._forms[dialect.name] = form
        return form


def _is_symbol(value: Any) -> bool:
    # SQLAlchemy marks a parameter it has no value for with `symbol('REQUIRED')`.
    return type(value).__name__ == "symbol"
