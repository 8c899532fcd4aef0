"""What the routes of one app share: the view of the service, the settings, the event hub, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from twin.api.config import ApiConfig
from twin.api.events import Hub
from twin.api.metrics import ApiMetrics
from twin.api.view import TwinView
from twin.live.query import TickReport


@dataclass
class ApiState:
    """Shared by the routes of one app."""

    view: TwinView
    config: ApiConfig
    hub: Hub
    metrics: ApiMetrics

    @classmethod
    def of(cls, service, config: ApiConfig) -> ApiState:
        """The state of an app over a live service."""
        view = TwinView(service)
        return cls(view, config, Hub(view, config.ws_queue), ApiMetrics(view))

    def on_tick(self, report: TickReport) -> None:
        """The tick listener the app adds to ``service.listeners`` (ingest thread; never blocks)."""
        self.metrics.observe(report)
        self.hub.on_tick(report)
