from __future__ import annotations

from pydantic import BaseModel

from maskline.keys.models import ApiKey
from maskline.kit.clock import rfc3339


class KeyOut(BaseModel):
    id: str
    org_id: str
    prefix: str
    rate_limit: int | None
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    expires_at: str | None

    @classmethod
    def build(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            org_id=key.org_id,
            prefix=key.prefix,
            rate_limit=key.rate_limit,
            created_at=rfc3339(key.created_at),
            last_used_at=rfc3339(key.last_used_at),
            revoked_at=rfc3339(key.revoked_at),
            expires_at=rfc3339(key.expires_at),
        )
