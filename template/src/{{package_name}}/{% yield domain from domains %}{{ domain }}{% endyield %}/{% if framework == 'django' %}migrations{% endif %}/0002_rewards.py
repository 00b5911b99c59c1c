"""Create the rewards table."""

from django.db import migrations, models
from django.db.models.functions import Now

DOMAIN = __package__.split(".")[-2]


class Migration(migrations.Migration):
    dependencies = [(DOMAIN, "0001_records")]

    operations = [
        migrations.CreateModel(
            name="Reward",
            fields=[
                ("event_id", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("subject", models.CharField(max_length=200)),
                ("points", models.IntegerField()),
                ("created_at", models.DateTimeField(auto_now_add=True, db_default=Now())),
            ],
            options={"db_table": "rewards"},
        ),
    ]
