"""The shapes of the model store's management API (TorchServe's vocabulary, snake_case)."""

from rest_framework import serializers

from modelstore.models import ModelVersion, RegisteredModel


class StoreErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(help_text="the HTTP status, again")
    type = serializers.CharField(help_text="snake_case, e.g. model_not_found, invalid_card, conflict")
    message = serializers.CharField(help_text="what went wrong and what to change")


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()


class SourceSerializer(serializers.Serializer):
    submission = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="your submission whose released files these are"
    )
    paths = serializers.ListField(
        child=serializers.CharField(max_length=1000, trim_whitespace=False),
        min_length=1,
        max_length=100,
        help_text="released files or folders (a folder ends with /), e.g. ['model/'] or ['model.pt']",
    )
    sha256 = serializers.DictField(
        child=serializers.CharField(max_length=64),
        required=False,
        help_text="optional: release path -> the sha256 you expect; each must match",
    )


class RegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="<dataset>-<task>, e.g. clam-malignancy")
    source = SourceSerializer()
    label = serializers.CharField(max_length=40, required=False, allow_blank=True, help_text="e.g. 1.0")
    visibility = serializers.ChoiceField(
        choices=RegisteredModel.Visibility.choices,
        required=False,
        help_text="a new model: default private; an existing one: unchanged unless given",
    )
    card = serializers.DictField(required=False, help_text="see /api/v1/model-card.schema.json")


class AliasSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)


class ModelListItemSerializer(serializers.Serializer):
    name = serializers.CharField()
    owner = serializers.CharField()
    dataset = serializers.CharField()
    task = serializers.CharField()
    default_version = serializers.IntegerField(allow_null=True)
    visibility = serializers.ChoiceField(choices=RegisteredModel.Visibility.choices)
    url = serializers.URLField()


class ModelListSerializer(serializers.Serializer):
    models = ModelListItemSerializer(many=True)
    next_page_token = serializers.CharField(allow_null=True, help_text="pass it back for the next page")


class ModelFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class ServeWorkerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["starting", "ready"])
    started_at = serializers.DateTimeField()
    ready_at = serializers.DateTimeField(allow_null=True)
    slot = serializers.CharField(allow_blank=True, help_text="the run slot (GPU) it holds; empty on CPUs")


class DeploymentSerializer(serializers.Serializer):
    min_workers = serializers.IntegerField()
    max_workers = serializers.IntegerField()
    last_cold_start_seconds = serializers.FloatField(allow_null=True, help_text="container start to ready, last time")
    gpu = serializers.BooleanField(help_text="each worker holds a GPU")
    workers = ServeWorkerSerializer(many=True)


class VersionSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the model's name")
    version = serializers.IntegerField()
    label = serializers.CharField(allow_blank=True)
    state = serializers.ChoiceField(choices=ModelVersion.State.choices)
    aliases = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    submission = serializers.IntegerField()
    files = ModelFileSerializer(many=True)
    card = serializers.DictField()
    metrics = serializers.DictField()
    metrics_source = serializers.CharField(allow_blank=True)
    image_digest = serializers.CharField(allow_blank=True)
    dataset_fingerprint = serializers.CharField(allow_blank=True)
    provenance_url = serializers.URLField(help_text="the run's provenance record (its owner and staff may read it)")
    url = serializers.URLField()
    deployment = DeploymentSerializer(allow_null=True, help_text="its serving workers, once it was scaled")


class ModelSerializer(ModelListItemSerializer):
    created_at = serializers.DateTimeField()
    aliases = serializers.DictField(child=serializers.IntegerField(), help_text="alias -> version number")
    versions = VersionSerializer(many=True)
