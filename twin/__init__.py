"""citytwin's digital twin: geodesy, the grid, CIM/BIM layers, live state, alerts, service and CLI."""

__version__ = "0.1.0"
