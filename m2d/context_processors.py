from django.conf import settings

from accounts.selectors import mlflow_experiment_url


def platform(request):
    researcher = getattr(request.user, "researcher", None) if request.user.is_authenticated else None
    return {
        "mlflow_public_url": settings.MLFLOW_PUBLIC_URL,
        "mlflow_experiment_url": mlflow_experiment_url(researcher),
        "researcher": researcher,
    }
