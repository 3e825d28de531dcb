"""The workbench's pages, one module per area; none is in the API's OpenAPI schema.

``router`` holds the pages on paths of their own; ``shared`` those on paths the JSON API
answers too, which match browsers only (mimamori/web/routing.py) and go before the API's routes.
"""

from __future__ import annotations

from fastapi import APIRouter

from mimamori.web.routes import (
    account,
    admin,
    audit,
    cases,
    hosts,
    images,
    notices,
    operations,
    queue,
    search,
    sign_in,
    takedown_report,
    takedowns,
)

router = APIRouter(include_in_schema=False)
for _module in (sign_in, account, admin, queue, images, cases, search, audit, operations):
    router.include_router(_module.router)

shared = APIRouter(include_in_schema=False)
# The report's paths before a takedown's own (/takedowns/report is not /takedowns/{id}).
for _module in (cases, search, audit, takedown_report, takedowns, notices, hosts):
    shared.include_router(_module.shared)
