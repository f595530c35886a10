"""The ``reference_profiles`` table: versioned reference profiles per model, at most one active."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from sinks.sql import schema as tables
from sinks.sql.engine import now_ms
from sinks.sql.rows import TableFamily, check_name

__all__ = ["ProfileNotFound", "ProfileInfo", "ReferenceProfiles"]


class ProfileNotFound(LookupError):
    """No reference profile with that model and version."""


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    """A stored reference profile, without its (possibly large) body."""

    model: str
    version: int
    active: bool
    created_at_ms: int


class ReferenceProfiles(TableFamily):
    """Writes and reads ``reference_profiles``."""

    def save(self, model: str, profile_json: dict, *, activate: bool) -> int:
        """Store a new version of ``model``'s reference profile and return its version (1, 2, ...)."""
        check_name("model", model)
        if not isinstance(profile_json, Mapping):
            raise TypeError("profile_json must be a dict")
        t = tables.reference_profiles.c
        for attempt in range(3):
            try:
                with self._connect(write=True) as conn:
                    latest = conn.execute(sa.select(sa.func.max(t.profile_version)).where(t.model == model)).scalar()
                    version = (latest or 0) + 1
                    if activate:
                        conn.execute(sa.update(tables.reference_profiles)
                                     .where(t.model == model, t.active).values(active=False))
                    conn.execute(sa.insert(tables.reference_profiles).values(
                        model=model, profile_version=version, active=bool(activate), created_at_ms=now_ms(),
                        profile=dict(profile_json),
                    ))
                    return version
            except sa_exc.IntegrityError:
                # Another writer took the same version number (PostgreSQL, concurrent saves): take the next.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def activate(self, model: str, version: int) -> None:
        """Make profile ``version`` the active reference of ``model`` (and no other)."""
        t = tables.reference_profiles.c
        with self._connect(write=True) as conn:
            exists = conn.execute(
                sa.select(t.active).where(t.model == model, t.profile_version == version)
            ).first()
            if exists is None:
                raise ProfileNotFound(f"model {model!r} has no reference profile version {version}")
            # Two statements, the deactivation first: the unique index allows one active row at every step.
            conn.execute(sa.update(tables.reference_profiles)
                         .where(t.model == model, t.active, t.profile_version != version).values(active=False))
            conn.execute(sa.update(tables.reference_profiles)
                         .where(t.model == model, t.profile_version == version).values(active=True))

    def active(self, model: str) -> dict | None:
        """Return the active reference profile of ``model``, or ``None`` when it has none."""
        t = tables.reference_profiles.c
        with self._connect(write=False) as conn:
            return conn.execute(sa.select(t.profile).where(t.model == model, t.active)).scalar()

    def all_active(self) -> dict[str, dict]:
        """Return ``{model: profile}`` for every model that has an active reference profile."""
        t = tables.reference_profiles.c
        with self._connect(write=False) as conn:
            return {row.model: row.profile for row in conn.execute(sa.select(t.model, t.profile).where(t.active))}

    def versions(self, model: str) -> list[ProfileInfo]:
        """Return every stored profile of ``model``, oldest version first."""
        t = tables.reference_profiles.c
        with self._connect(write=False) as conn:
            rows = conn.execute(
                sa.select(t.model, t.profile_version, t.active, t.created_at_ms)
                .where(t.model == model).order_by(t.profile_version)
            ).all()
        return [ProfileInfo(r.model, r.profile_version, bool(r.active), r.created_at_ms) for r in rows]
