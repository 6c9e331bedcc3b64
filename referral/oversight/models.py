"""Break-glass grants: time-limited access of one oversight user to one case (SPEC §7, §8)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from referral.db import Base, intpk


class BreakGlassGrant(Base):
    __tablename__ = "break_glass_grants"

    id: Mapped[intpk]
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    # The justification may describe the case: sealed under the case key like any case text.
    justification_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    granted_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    reviewed_at: Mapped[dt.datetime | None]
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    review_outcome: Mapped[str | None] = mapped_column(String(16))  # justified | unjustified
