"""devhost: a local Azure Functions + Durable Functions host for v2-model Python apps.

Run ``python -m devhost start`` in (or ``--app`` pointing at) a folder with ``function_app.py``.
It plays the parts of the Functions host (HTTP, queue and timer triggers, ``local.settings.json``,
``host.json``) and of the Durable extension (``devhost/durable/``: SQLite history, replay through
the real ``azure-functions-durable`` SDK, the Durable HTTP API), so an app runs unchanged without
Core Tools or the .NET runtime. See ``devhost/README.md``.

Public surface for other code: :mod:`devhost.app_loader` (load and call functions),
:mod:`devhost.testing` (run devhost as a subprocess in tests, demos and benchmarks).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
