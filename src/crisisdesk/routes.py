"""Every router of the application, in one place."""

from __future__ import annotations

from fastapi import FastAPI

from crisisdesk import health
from crisisdesk.auth import api as auth_api
from crisisdesk.auth import views as auth_views
from crisisdesk.catalog import api as catalog_api
from crisisdesk.catalog import views as catalog_views
from crisisdesk.comms import api as comms_api
from crisisdesk.comms import views as comms_views
from crisisdesk.customer import api as customer_api
from crisisdesk.customer import impact_api, impact_views, notes_api, outreach_api, outreach_views, portal_views
from crisisdesk.incident import api as incident_api
from crisisdesk.incident import guidance_api, guidance_views
from crisisdesk.incident import views as incident_views
from crisisdesk.maintenance import api as maintenance_api
from crisisdesk.maintenance import views as maintenance_views
from crisisdesk.notify import api as subscribers_api
from crisisdesk.notify import delivery_api, delivery_views
from crisisdesk.notify import views as subscribers_views
from crisisdesk.oncall import api as oncall_api
from crisisdesk.oncall import page_api, page_views
from crisisdesk.oncall import views as oncall_views
from crisisdesk.signal import api as signal_api
from crisisdesk.signal import hooks as signal_hooks
from crisisdesk.signal import probe_api, probe_views
from crisisdesk.signal import views as signal_views
from crisisdesk.statuspage import views as statuspage_views
from crisisdesk.support import api as tickets_api
from crisisdesk.support import brief_api, brief_views
from crisisdesk.support import helpdesk_api as helpdesks_api
from crisisdesk.support import helpdesk_views as helpdesks_views
from crisisdesk.support import hooks as support_hooks
from crisisdesk.support import views as tickets_views


def include_all(app: FastAPI) -> None:
    for module in (auth_api, catalog_api, incident_api, maintenance_api):
        app.include_router(module.router, prefix="/api/v1")
    for view_module in (statuspage_views, auth_views, incident_views, catalog_views, maintenance_views):
        app.include_router(view_module.router)
    app.include_router(subscribers_api.router, prefix="/api/v1")
    app.include_router(subscribers_views.router)
    app.include_router(delivery_api.router, prefix="/api/v1")
    app.include_router(delivery_views.router)
    app.include_router(comms_api.router, prefix="/api/v1")
    app.include_router(comms_views.router)
    app.include_router(signal_api.router, prefix="/api/v1")
    app.include_router(signal_views.router)
    app.include_router(signal_hooks.router)
    app.include_router(probe_api.router, prefix="/api/v1")
    app.include_router(probe_views.router)
    app.include_router(page_api.router, prefix="/api/v1")
    app.include_router(page_api.public)
    app.include_router(page_views.router)
    app.include_router(oncall_api.router, prefix="/api/v1")
    app.include_router(oncall_views.router)
    app.include_router(customer_api.router, prefix="/api/v1")
    app.include_router(notes_api.router, prefix="/api/v1")
    app.include_router(portal_views.router)
    app.include_router(impact_api.router, prefix="/api/v1")
    app.include_router(impact_views.router)
    app.include_router(guidance_api.router, prefix="/api/v1")
    app.include_router(guidance_views.router)
    app.include_router(outreach_api.router, prefix="/api/v1")
    app.include_router(outreach_views.router)
    app.include_router(brief_api.router, prefix="/api/v1")
    app.include_router(brief_views.router)
    app.include_router(helpdesks_api.router, prefix="/api/v1")
    app.include_router(helpdesks_views.router)
    app.include_router(support_hooks.router)
    app.include_router(tickets_api.router, prefix="/api/v1")
    app.include_router(tickets_views.router)
    app.include_router(health.router)
