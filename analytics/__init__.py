"""Analytics: KPI engine (numpy), limit tables, alert state machine, notifiers."""
