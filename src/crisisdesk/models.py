"""Imports every domain's models so the metadata is complete (Alembic, create_all)."""

from crisisdesk.auth import models as auth_models
from crisisdesk.catalog import models as catalog_models
from crisisdesk.comms import models as comms_models
from crisisdesk.customer import models as customer_models
from crisisdesk.incident import models as incident_models
from crisisdesk.kit import events, jobs
from crisisdesk.kit.db import Base
from crisisdesk.notify import models as notify_models
from crisisdesk.oncall import models as oncall_models
from crisisdesk.signal import models as signal_models
from crisisdesk.statuspage import models as statuspage_models
from crisisdesk.support import models as support_models

metadata = Base.metadata

__all__ = [
    "auth_models",
    "catalog_models",
    "comms_models",
    "customer_models",
    "events",
    "incident_models",
    "jobs",
    "metadata",
    "notify_models",
    "oncall_models",
    "signal_models",
    "statuspage_models",
    "support_models",
]
