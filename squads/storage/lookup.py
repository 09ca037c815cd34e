"""Finding a row by a unique prefix of its id, as git and docker do for commits and containers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

MIN_PREFIX = 4  # shorter would match too much to be meant; git asks for 4 as well
SHOWN = 10  # matches listed in an "ambiguous" message


class AmbiguousId(LookupError):
    """A prefix matches more than one id; the message lists them."""


def id_by_prefix(session: Session, column: InstrumentedAttribute[str], ref: str, *, what: str) -> str | None:
    """The id in ``column`` equal to ``ref``, else the one id starting with it; None when none does.

    Raises ``AmbiguousId`` when several ids start with ``ref``, listing them (at most ten) so
    the caller can type one out."""
    if session.scalar(select(column).where(column == ref)) is not None:
        return ref
    if len(ref) < MIN_PREFIX:
        return None
    # autoescape: a '%' or '_' typed by the user is a character, not a LIKE wildcard.
    stmt = select(column).where(column.startswith(ref, autoescape=True)).order_by(column).limit(SHOWN + 1)
    matches = list(session.scalars(stmt))
    if len(matches) > 1:
        more = " and more" if len(matches) > SHOWN else ""
        raise AmbiguousId(f"ambiguous: {ref!r} matches {what} ids {', '.join(matches[:SHOWN])}{more}; "
                          "give more characters")
    return matches[0] if matches else None
