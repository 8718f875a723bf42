"""What every dashboard is built from: the site, its limits, and the parts all alumon dashboards share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm

from alumon.config import Site
from alumon.dashboards import panels as p
from analytics.limits import Limits


@dataclass(frozen=True)
class Context:
    site: Site
    limits: Limits

    @property
    def site_id(self) -> str:
        return self.site.id

    def uid(self, kind: str) -> str:
        """Stable across builds (a push overwrites the same dashboard); Grafana allows 40 characters."""
        uid = f"alumon-{kind}-{self.site_id}"
        return uid if len(uid) <= 40 else f"alumon-{kind}-{hashlib.sha1(self.site_id.encode()).hexdigest()[:12]}"

    def base(self, kind: str, zh: str, en: str, description: str) -> dash.Dashboard:
        """Title, uid, tags, the site's time zone, refresh, links to the site's other dashboards, the alert
        annotations and the ``$site`` variable: what every alumon dashboard has."""
        return (dash.Dashboard(f"{zh} {en} · {self.site_id}").uid(self.uid(kind)).description(description)
                .tags(["alumon", self.site_id, kind]).timezone(self.site.config.site.timezone)
                .time("now-6h", "now").refresh("30s").editable().tooltip(dm.DashboardCursorSync.CROSSHAIR)
                .link(p.site_links(self.site_id)).annotation(p.alerts_annotation())
                .with_variable(p.site_variable(self.site_id)))
