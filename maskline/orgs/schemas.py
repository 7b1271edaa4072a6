from __future__ import annotations

from pydantic import BaseModel

from maskline.kit.clock import rfc3339
from maskline.orgs.models import Organisation


class OrganisationOut(BaseModel):
    id: str
    name: str
    sandbox: bool
    gstin: str | None
    state_code: str | None
    rate_paise: int
    pulse_sec: int
    max_live_calls: int
    created_at: str | None

    @classmethod
    def build(cls, org: Organisation) -> OrganisationOut:
        return cls(
            id=org.id,
            name=org.name,
            sandbox=org.is_sandbox,
            gstin=org.gstin,
            state_code=org.state_code,
            rate_paise=org.rate_paise,
            pulse_sec=org.pulse_sec,
            max_live_calls=org.max_live_calls,
            created_at=rfc3339(org.created_at),
        )
