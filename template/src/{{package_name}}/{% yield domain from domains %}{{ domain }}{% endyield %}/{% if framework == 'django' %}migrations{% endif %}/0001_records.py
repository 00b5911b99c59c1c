"""Create the records table."""

from django.db import migrations, models
from django.db.models.functions import Now


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Record",
            fields=[
                ("key", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("value", models.CharField(max_length=2000)),
                ("updated_at", models.DateTimeField(auto_now=True, db_default=Now())),
            ],
            options={"db_table": "records"},
        ),
    ]
