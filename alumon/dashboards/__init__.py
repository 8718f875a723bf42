"""Grafana dashboards generated from a site config (issue #8).

``context`` + ``panels`` + ``bands`` (limits from ``analytics.limits``) + ``queries`` (InfluxQL) are the parts;
``overview``, ``potline``, ``refinery``, ``cems``, ``scorecard`` and ``health`` each build one dashboard;
``build`` assembles and serialises them, ``dataquery`` teaches the foundation SDK InfluxDB queries, ``push``
uploads to a Grafana, ``frames`` + ``preview`` run the same queries and draw PNGs without one.
"""
