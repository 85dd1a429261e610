"""Params of MLflow tracking (where runs go is runtime, via MLFLOW_TRACKING_URI)."""

from pydantic import Field

from nextlab.config.base import Section


class TrackingParams(Section):
    enabled: bool = True
    experiment: str | None = Field(None, description="experiment name; default nextlab/<study>")
