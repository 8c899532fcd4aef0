"""The twin's HTTP API (docs/contract/http.md 3.3): FastAPI app over a running `twin.live.service.LiveService`.

- `create_app(service, config)` -> the FastAPI app (OpenAPI docs at ``/docs``);
- `serve(service, host, port, token, cors)` -> a handle (``.url``, ``.stop()``) running it under
  uvicorn in a background thread;
- `ApiConfig`: token, CORS origins, limits.

Endpoints: ``/`` (the operator's dashboard, ``/static/*``), ``/api/basemap.png``,
``/api/basemap/buildings``, ``/api/basemap/projection``, ``/api/health``, ``/api/status``,
``/api/grid``, ``/api/layers/{name}`` (``.png``, ``/legend``), ``/api/point``, ``/api/alerts``
(``/{id}``, ``/{id}.xml``, ``POST /{id}/ack``), ``/api/silences``, ``/api/cases`` (and ``/{id}``,
``/suggestions``, ``/dispatch``, ``/transition``, ``/notes``, ``/attachments``), ``/api/ledger`` (``.csv``),
``/api/units``, ``/api/units/{unit}/tasks``, ``/unit`` (the field-unit page), ``/open311/v2/...`` (Open311
GeoReport v2), ``/ws``, ``/metrics``.
"""

from twin.api.app import create_app
from twin.api.config import ApiConfig
from twin.api.server import ServerHandle, serve

__all__ = ["ApiConfig", "ServerHandle", "create_app", "serve"]
