"""[commissioning] settings: the installer's page (web/). A section of the unit's config, so it lives with the agent
and pydantic only: the config never imports the web framework (starlette/uvicorn are the optional `web` extra)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from common.settings import Section


class CommissioningSettings(Section):
    enabled: bool = Field(False, description="Serve the installer's page while `pid-agent run` runs.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on: the unit's hotspot/LAN "
                                                             "address only, never a public one.")
    port: int = Field(8443, ge=1, le=65535, description="HTTPS port of the page.")
    password_file: Path | None = Field(None, description="File holding the unit's page password (default: "
                                                         "<data_dir>/commissioning/password, made on first start).")
    walk_test_minutes: float = Field(30.0, gt=0, le=240, description="A walk test ends by itself after this long, "
                                                                     "so a unit is never left on test.")
    view_fps: float = Field(4.0, gt=0, le=15, description="Live view frames per second (only while watched).")
    view_width: int = Field(640, ge=160, le=1920, description="Width of the live view picture in pixels.")
    tls: bool = Field(True, description="HTTPS with the unit's own self-signed certificate (false: plain HTTP, "
                                        "for loopback tests only).")
