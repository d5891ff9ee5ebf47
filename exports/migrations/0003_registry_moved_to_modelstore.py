"""The models registered here live in the model store now (modelstore 0002 moved every row, with
its file's bytes); the old table goes."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("exports", "0002_airlock"),
        ("modelstore", "0002_from_exports_registry"),
    ]

    operations = [
        migrations.DeleteModel(name="RegisteredModel"),
    ]
