"""Every domain's tables, so that ``Base.metadata`` is whole (for Alembic)."""

from maskline.accounts import models as accounts_models
from maskline.audit import models as audit_models
from maskline.billing import models as billing_models
from maskline.calls import models as calls_models
from maskline.keys import models as keys_models
from maskline.kit.db import Base
from maskline.numbers import models as numbers_models
from maskline.orgs import models as orgs_models
from maskline.payments import models as payments_models
from maskline.recordings import models as recordings_models
from maskline.stats import models as stats_models
from maskline.webhooks import models as webhooks_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "audit_models",
    "billing_models",
    "calls_models",
    "keys_models",
    "metadata",
    "numbers_models",
    "orgs_models",
    "payments_models",
    "recordings_models",
    "stats_models",
    "webhooks_models",
]
