"""Synchronization schema calls beyond GET/PUT of a job's schema (core.graph.synchronization):
a template's default schema and ``parseExpression``.

* ``GET /servicePrincipals/{id}/synchronization/templates/{templateId}/schema``: the schema a new
  job of that template starts with (https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationtemplate).
* ``POST .../jobs/{jobId}/schema/parseExpression``
  (https://learn.microsoft.com/graph/api/synchronization-synchronizationschema-parseexpression):
  a read in effect (nothing is stored), so it is retried like one.
"""

from __future__ import annotations

from core.graph.transport import GraphClient


def get_template_schema(client: GraphClient, sp_id: str, template_id: str) -> dict:
    """The synchronization template's default schema."""
    return client.get(f"/servicePrincipals/{sp_id}/synchronization/templates/{template_id}/schema")


def parse_expression(client: GraphClient, sp_id: str, job_id: str, expression: str) -> dict:
    """Graph's parseExpressionResponse for one expression (``parsingSucceeded``, ``parsedExpression``, ``error``)."""
    return client.post(f"/servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/schema/parseExpression",
                       {"expression": expression}, idempotent=True) or {}
