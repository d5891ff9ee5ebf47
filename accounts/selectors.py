"""Reads of the accounts that other parts of the platform rely on."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model

from .models import Researcher


@dataclass(frozen=True)
class MlflowCredentials:
    """What a run of this researcher logs to MLflow as."""

    researcher_id: int
    username: str
    password: str
    experiment_name: str


def mlflow_credentials(user_id: int) -> MlflowCredentials:
    researcher = Researcher.objects.get(user_id=user_id)
    return MlflowCredentials(
        researcher_id=researcher.pk,
        username=researcher.mlflow_username,
        password=researcher.mlflow_password,
        experiment_name=researcher.mlflow_experiment_name,
    )


def mlflow_experiment_url(researcher: Researcher | None) -> str:
    """Where MLflow's web page opens on the researcher's own experiment (its runs and metrics);
    MLflow's home page for anyone without one yet."""
    if researcher is None or not researcher.mlflow_experiment_id:
        return settings.MLFLOW_PUBLIC_URL
    return f"{settings.MLFLOW_PUBLIC_URL.rstrip('/')}/#/experiments/{researcher.mlflow_experiment_id}"


def mlflow_password_now(researcher_id: int) -> str:
    """The researcher's MLflow password as it is now (they may have rotated it)."""
    return Researcher.objects.get(pk=researcher_id).mlflow_password


def admins_to_tell() -> bool:
    """Whether any active staff account has an address that sign-ups are mailed to."""
    return get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="").exists()
