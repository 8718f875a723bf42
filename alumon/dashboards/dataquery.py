"""The InfluxDB (InfluxQL) query type the foundation SDK lacks: a cog ``Dataquery`` with its builder, an
annotation that carries one, and their registration so ``Dashboard.from_json`` reads them back.

The SDK 11.6 ships query types for Prometheus, Loki, ... but not for InfluxDB; without a registered variant
``from_json`` would keep our targets as opaque ``UnknownDataquery`` bags. Annotations: Grafana 10+ runs an
InfluxQL annotation from ``target`` (``query``, ``textColumn``, ``tagsColumn``, ``fromAnnotations``), a shape the
SDK's ``AnnotationTarget`` (built for the ``-- Grafana --`` source) cannot hold.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_TYPE = "influxdb"
DATASOURCE_UID = "alumon-influxdb"  # as provisioned in grafana/provisioning/datasources/alumon.yaml
DATASOURCE_NAME = "alumon-influxdb"

ResultFormat = Literal["time_series", "table"]


def datasource_ref() -> dashboard.DataSourceRef:
    return dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class InfluxQuery(cogvariants.Dataquery):
    """A raw InfluxQL target (Grafana's ``InfluxQuery`` with ``rawQuery: true``)."""

    def __init__(self, ref_id: str = "A", query: str = "", result_format: ResultFormat = "time_series",
                 alias: str | None = None, hide: bool | None = None,
                 datasource: dashboard.DataSourceRef | None = None, annotation: dict[str, Any] | None = None):
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.hide = hide
        self.datasource = datasource
        self.annotation = annotation or {}  # textColumn, tagsColumn, titleColumn, fromAnnotations

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"refId": self.ref_id, "query": self.query, "rawQuery": True,
                                  "resultFormat": self.result_format}
        if self.alias is not None:
            out["alias"] = self.alias
        if self.hide is not None:
            out["hide"] = self.hide
        if self.datasource is not None:
            out["datasource"] = self.datasource
        out.update(self.annotation)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        known = {"refId", "query", "rawQuery", "resultFormat", "alias", "hide", "datasource"}
        return cls(ref_id=data.get("refId", "A"), query=data.get("query", ""),
                   result_format=data.get("resultFormat", "time_series"), alias=data.get("alias"),
                   hide=data.get("hide"), datasource=dashboard.DataSourceRef.from_json(ds) if ds else None,
                   annotation={k: v for k, v in data.items() if k not in known})


class InfluxTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, query: str, ref_id: str = "A") -> None:
        self._internal = InfluxQuery(ref_id=ref_id, query=query, datasource=datasource_ref())

    def build(self) -> cogvariants.Dataquery:
        return self._internal

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self


class InfluxAnnotation(dashboard.AnnotationQuery):
    """An annotation whose ``target`` is an InfluxQL query; events take text and tags from its columns."""

    influx: InfluxQuery

    def __init__(self, influx: InfluxQuery | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.influx = influx or InfluxQuery()

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["target"] = self.influx
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        base = dashboard.AnnotationQuery.from_json({k: v for k, v in data.items() if k != "target"})
        return cls(influx=InfluxQuery.from_json(data.get("target", {})), name=base.name, datasource=base.datasource,
                   enable=base.enable, hide=base.hide, icon_color=base.icon_color, filter_val=base.filter_val,
                   type_val=base.type_val, built_in=base.built_in, expr=base.expr)


class Annotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    def __init__(self, name: str, query: str, text_column: str, tags_columns: list[str], color: str) -> None:
        target = InfluxQuery(ref_id="Anno", query=query, result_format="table", datasource=datasource_ref(),
                             annotation={"fromAnnotations": True, "textColumn": text_column,
                                         "tagsColumn": ",".join(tags_columns)})
        self._internal = InfluxAnnotation(influx=target, name=name, datasource=datasource_ref(), enable=True,
                                          icon_color=color)

    def build(self) -> dashboard.AnnotationQuery:
        return self._internal


def register() -> None:
    """Idempotent: the SDK's panel and query variants plus InfluxDB, for ``Dashboard.from_json``."""
    cogplugins.register_default_plugins()
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(DATASOURCE_TYPE, InfluxQuery.from_json))


def dashboard_from_json(data: dict[str, Any]) -> dashboard.Dashboard:
    """``Dashboard.from_json`` that keeps InfluxQL annotations (the SDK's model would drop their query)."""
    register()
    board = dashboard.Dashboard.from_json(data)
    raw = data.get("annotations", {}).get("list", [])
    board.annotations.list_val = [InfluxAnnotation.from_json(a) if a.get("datasource", {}).get("type") ==
                                  DATASOURCE_TYPE else dashboard.AnnotationQuery.from_json(a) for a in raw]
    return board
