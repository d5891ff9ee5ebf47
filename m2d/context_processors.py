from django.conf import settings


def platform(request):
    researcher = getattr(request.user, "researcher", None) if request.user.is_authenticated else None
    return {"mlflow_public_url": settings.MLFLOW_PUBLIC_URL, "researcher": researcher}
