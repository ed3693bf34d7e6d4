"""What a viewer may see: an admin, everything; a team member, their own team and its keys only."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.dashboard import lookups
from gateway.dashboard.figures import Scope
from gateway.dashboard.session import Viewer
from gateway.errors import GatewayError


def forbidden(message: str = "this belongs to another team") -> GatewayError:
    return GatewayError(403, message, type="permission_error", code="forbidden")


def admin_only(viewer: Viewer) -> None:
    if not viewer.admin:
        raise forbidden("for admins only")


async def scope_for(
    session: AsyncSession,
    viewer: Viewer,
    team_id: str | None,
    key_id: str | None = None,
    model: str | None = None,
    *,
    team_required: bool = False,
) -> Scope:
    """The scope a query may read, or a 403. A team member's default team is their own; a key must
    belong to the team asked about (an unknown key is refused the same way, telling nothing). An
    empty filter (an HTML form's blank field) is no filter."""
    team_id, key_id, model = team_id or None, key_id or None, model or None
    if not viewer.admin:
        if team_id is not None and team_id != viewer.team_id:
            raise forbidden()
        team_id = viewer.team_id
    if team_required and team_id is None:
        raise GatewayError(400, "team_id is required", type="invalid_request_error", param="team_id")
    if key_id is not None:
        owner = await lookups.key_team(session, key_id)
        if owner is None and viewer.admin and team_id is None:
            pass  # an admin asking after a deleted key's history: it reads as no data
        elif owner is None or (team_id is not None and owner != team_id):
            raise forbidden("no such key in this team")
    return Scope(team_id=team_id, key_id=key_id, model=model)
