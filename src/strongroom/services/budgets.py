"""The request budget left per WebDAV client: what the runs against each
account may still send in the current window (strongroom.storage.budget).
Read from the budget's state file, without a request to the server."""

from __future__ import annotations

from dataclasses import dataclass

from strongroom.errors import StrongroomError
from strongroom.services.urls import redact_password


@dataclass(frozen=True)
class ClientBudget:
    client: str  # the WebDAV client id
    url: str  # its URL, never with a password
    remaining: int  # requests it may still send in the current window
    capacity: int  # requests per window
    window_seconds: float


def webdav_budgets(manager) -> list[ClientBudget]:
    """The budget of every WebDAV client of `manager` that keeps one, by client id.
    A client without a budget (its vendor sets none) or that cannot be read is left out."""
    from strongroom.storage import shared_request_budget

    service = manager.webdav_service
    out = []
    for client_id in service.list_clients():
        credentials = service.get_client(client_id)
        if credentials.service_type in ("s3", "sftp"):
            continue  # no request budget: S3 and SFTP servers say when to slow down
        try:
            budget = shared_request_budget(credentials.url, credentials.username, credentials.service_type,
                                           manager.backup_service.cache_root, service.settings)
        except StrongroomError:
            continue
        if budget is None:
            continue
        out.append(ClientBudget(client_id, redact_password(credentials.url), int(budget.available()),
                                int(budget.capacity), float(budget.window)))
    return out
