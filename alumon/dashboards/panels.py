"""Panel, variable and annotation building blocks shared by the dashboards: one look (bilingual titles, units,
threshold bands with their sources in the description) and one data source for all of them."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, text, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.text import TextMode

from alumon import schema
from alumon.dashboards import queries as q
from alumon.dashboards.bands import Bands
from alumon.dashboards.dataquery import Annotation, InfluxTarget, datasource_ref

# Grafana unit ids; "suffix:" makes a custom unit for what Grafana has no id for.
KWH_PER_T = "suffix: kWh/t"
KGCE_PER_T = "suffix: kgce/t"
KGCE = "suffix: kgce"
MG_NM3 = "conmgNm3"  # mg/Nm³: HJ 75 values are at standard conditions, dry gas
TONNE = "masst"
KILOAMPERE = "kamp"
VOLT = "volt"
SHARE = "percentunit"  # 0..1 shown as %
PERCENT = "percent"  # 0..100
PER_SECOND = "suffix: /s"
PER_MINUTE = "suffix: /min"

Panel = timeseries.Panel | stat.Panel | bargauge.Panel | table.Panel | text.Panel
NEUTRAL = Bands("blue", (), "")  # without bands Grafana would colour values from 80 up red


def title(zh: str, en: str) -> str:
    return f"{zh} {en}"


def influx(query: str, ref: str = "A", alias: str | None = None, as_table: bool = False) -> InfluxTarget:
    t = InfluxTarget(query, ref)
    if alias is not None:
        t.alias(alias)
    if as_table:
        t.table()
    return t


def describe(text_: str, bands: Bands | None = None) -> str:
    return text_ + (f"\n\nBands 限值带 (analytics/limits.py → alumon/data/limits.yaml):\n{bands.describe()}"
                    if bands is not None and bands.marks else "")


def colour_map(entries: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    """Value → (display text, colour), e.g. alert states or reading quality. Booleans need Grafana's special
    value matchers (a text map does not match a boolean field)."""
    special = {"true": dm.SpecialValueMatch.TRUE, "false": dm.SpecialValueMatch.FALSE}
    maps: list[dm.ValueMapping] = [
        dm.SpecialValueMap(dm.DashboardSpecialValueMapOptions(special[k], dm.ValueMappingResult(text=t, color=c)))
        for k, (t, c) in entries.items() if k in special]
    plain = {k: v for k, v in entries.items() if k not in special}
    if plain:
        maps.append(dm.ValueMap(options={k: dm.ValueMappingResult(text=t, color=c, index=i)
                                         for i, (k, (t, c)) in enumerate(plain.items())}))
    return maps


def cell_colour(field: str, entries: dict[str, tuple[str, str]]) -> dash.DashboardFieldConfigSourceOverrides:
    return (dash.DashboardFieldConfigSourceOverrides()
            .matcher(dm.MatcherConfig(id_val="byName", options=field))
            .properties([dm.DynamicConfigValue(id_val="mappings", value=colour_map(entries)),
                         dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})]))


def named(field: str, display: str, bands: Bands | None = None, unit: str | None = None
          ) -> dash.DashboardFieldConfigSourceOverrides:
    """Per-series settings where one panel mixes quantities with different limits (e.g. SO₂ and PM)."""
    props = [dm.DynamicConfigValue(id_val="displayName", value=display)]
    if bands is not None:
        props.append(dm.DynamicConfigValue(id_val="thresholds", value=bands.thresholds().build()))
    if unit is not None:
        props.append(dm.DynamicConfigValue(id_val="unit", value=unit))
    return dash.DashboardFieldConfigSourceOverrides().matcher(
        dm.MatcherConfig(id_val="byName", options=field)).properties(props)


def timeseries_panel(title_: str, targets: list[InfluxTarget], unit: str, *, bands: Bands | None = None,
                     description: str = "", w: int = 12, h: int = 8, bars: bool = False, stacked: bool = False,
                     interval: str | None = None) -> timeseries.Panel:
    p = (timeseries.Panel().title(title_).description(describe(description, bands)).datasource(datasource_ref())
         .targets(list(targets)).unit(unit).span(w).height(h)
         .legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                 .placement(common.LegendPlacement.BOTTOM).show_legend(True))
         .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.NONE)))
    if bands is not None:
        p.thresholds(bands.thresholds()).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE_AND_AREA))
    if bars:
        p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    else:
        p.line_width(1.5).fill_opacity(5).show_points(common.VisibilityMode.NEVER)
    if stacked:
        p.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    if interval is not None:
        p.interval(interval)
    return p


def stat_panel(title_: str, targets: list[InfluxTarget], unit: str, *, bands: Bands | None = None,
               description: str = "", w: int = 6, h: int = 5, decimals: int | None = None) -> stat.Panel:
    p = (stat.Panel().title(title_).description(describe(description, bands)).datasource(datasource_ref())
         .targets(list(targets)).unit(unit).span(w).height(h)
         .color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE)
         .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    p.thresholds((bands or NEUTRAL).thresholds())
    if decimals is not None:
        p.decimals(decimals)
    return p


def bargauge_panel(title_: str, targets: list[InfluxTarget], unit: str, *, bands: Bands | None = None,
                   description: str = "", w: int = 12, h: int = 8, minimum: float | None = None,
                   maximum: float | None = None) -> bargauge.Panel:
    p = (bargauge.Panel().title(title_).description(describe(description, bands)).datasource(datasource_ref())
         .targets(list(targets)).unit(unit).span(w).height(h).orientation(common.VizOrientation.HORIZONTAL)
         .display_mode(common.BarGaugeDisplayMode.BASIC).show_unfilled(True)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    p.thresholds((bands or NEUTRAL).thresholds())
    if minimum is not None:
        p.min(minimum)
    if maximum is not None:
        p.max(maximum)
    return p


def table_panel(title_: str, targets: list[InfluxTarget], *, description: str = "", w: int = 12, h: int = 8,
                unit: str | None = None) -> table.Panel:
    p = (table.Panel().title(title_).description(description).datasource(datasource_ref()).targets(list(targets))
         .span(w).height(h).show_header(True).align(common.FieldTextAlignment.AUTO).inspect(False))
    if unit is not None:
        p.unit(unit)
    return p


def text_panel(title_: str, markdown: str, w: int = 24, h: int = 4) -> text.Panel:
    return text.Panel().title(title_).mode(TextMode.MARKDOWN).content(markdown).span(w).height(h)


def row(zh: str, en: str) -> dash.Row:
    return dash.Row(title(zh, en))


# --- variables, annotations, links --------------------------------------------------------------------------

def site_variable(site_id: str) -> dash.QueryVariable:
    return (dash.QueryVariable("site").label("厂区 Site").datasource(datasource_ref())
            .query(q.tag_values(schema.KPI, "site"))
            .current(dm.VariableOption(text=site_id, value=site_id, selected=True))
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC))


def unit_variable(kpi_condition: str | None, label: str = "工序 Process unit") -> dash.QueryVariable:
    """Process units of the site that have written the KPI the dashboard is about (All by default)."""
    where = q.SITE + (f" AND {kpi_condition}" if kpi_condition else "")
    return (dash.QueryVariable("unit").label(label).datasource(datasource_ref())
            .query(q.tag_values(schema.KPI, "unit_process", where))
            .current(dm.VariableOption(text="All", value="$__all", selected=True))
            .multi(True).include_all(True)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))


def device_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("device").label("设备 Device").datasource(datasource_ref())
            .query(q.tag_values(schema.TELEMETRY, "device", q.SITE))
            .current(dm.VariableOption(text="All", value="$__all", selected=True))
            .multi(True).include_all(True)
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC))


def alerts_annotation() -> Annotation:
    """Every state change of the site's alerts (analytics writes one ``alerts`` point per change)."""
    return Annotation("告警 Alerts", q.alerts_annotation(), "text", ["rule", "state", "severity", "unit_process"],
                      "red")


def site_links(site_id: str) -> dash.DashboardLink:
    return (dash.DashboardLink("alumon").type(dm.DashboardLinkType.DASHBOARDS).tags(["alumon", site_id])
            .as_dropdown(True).include_vars(True).keep_time(True))


ALERT_STATES = {"firing": ("触发 firing", "red"), "pending": ("待定 pending", "orange"),
                "resolved": ("恢复 resolved", "green")}
QUALITY = {"good": ("正常 good", "green"), "stale": ("无应答 stale", "red"), "bad": ("异常 bad", "red"),
           "out_of_range": ("超量程 out of range", "orange")}
MET = {"true": ("达标 met", "green"), "false": ("未达标 not met", "red")}
