"""Paraphrase is judged per source: a new share of the source restated, and new defaults.

A project whose semantic thresholds are still the old defaults (0.8 per sentence, 0.25 of the
draft to any source) moves to the new ones, which were measured on the same labelled sets; a
threshold an admin changed stays as it is.
"""

from django.db import migrations, models

OLD = {"semantic_threshold": 0.8, "semantic_share": 0.25}
NEW = {"semantic_threshold": 0.7, "semantic_share": 0.3}


def forwards(apps, schema_editor):
    Policy = apps.get_model("review", "Policy")
    Policy.objects.filter(**OLD).update(**NEW)


def backwards(apps, schema_editor):
    Policy = apps.get_model("review", "Policy")
    Policy.objects.filter(**NEW).update(**OLD)


class Migration(migrations.Migration):

    dependencies = [
        ("review", "0005_index_segments_removal_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="policy",
            name="semantic_source_share",
            field=models.FloatField(default=0.25),
        ),
        migrations.AlterField(
            model_name="policy",
            name="semantic_threshold",
            field=models.FloatField(default=0.7),
        ),
        migrations.AlterField(
            model_name="policy",
            name="semantic_share",
            field=models.FloatField(default=0.3),
        ),
        migrations.RunPython(forwards, backwards),
    ]
