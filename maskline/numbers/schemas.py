from __future__ import annotations

from pydantic import BaseModel

from maskline.kit.clock import rfc3339
from maskline.numbers.models import MaskedNumber


class NumberOut(BaseModel):
    number: str
    org_id: str | None
    created_at: str | None
    last_used_at: str | None

    @classmethod
    def build(cls, row: MaskedNumber) -> NumberOut:
        return cls(
            number=row.number,
            org_id=row.org_id,
            created_at=rfc3339(row.created_at),
            last_used_at=rfc3339(row.last_used_at),
        )
