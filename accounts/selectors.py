"""Reads of the accounts that other parts of the platform rely on."""

from __future__ import annotations

from dataclasses import dataclass

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


def mlflow_password_now(researcher_id: int) -> str:
    """The researcher's MLflow password as it is now (they may have rotated it)."""
    return Researcher.objects.get(pk=researcher_id).mlflow_password
