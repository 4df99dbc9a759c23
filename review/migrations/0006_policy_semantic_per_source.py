"""Paraphrase is judged per source (a new share of the source restated), and new defaults.

A project whose semantic thresholds are still the old defaults (0.8 per sentence, 0.25 of the
draft to any source) moves to the new ones, and one whose toxicity thresholds are still the old
defaults moves to the calibrated ones (``review.policy.DEFAULT_TOXICITY_THRESHOLDS``); a
threshold an admin changed stays as it is.
"""

from django.db import migrations, models

OLD = {"semantic_threshold": 0.8, "semantic_share": 0.25}
NEW = {"semantic_threshold": 0.7, "semantic_share": 0.3}
OLD_TOXICITY = {
    "toxicity": 0.5,
    "severe_toxicity": 0.2,
    "obscene": 0.5,
    "threat": 0.3,
    "insult": 0.5,
    "identity_attack": 0.3,
    "sexual_explicit": 0.4,
}
# Frozen here: a later change of the defaults is a migration of its own.
NEW_TOXICITY = {
    "toxicity": 0.8,
    "severe_toxicity": 0.3,
    "obscene": 0.3,
    "threat": 0.4,
    "insult": 0.3,
    "identity_attack": 0.3,
    "sexual_explicit": 0.5,
}


def _move(apps, semantic_from, semantic_to, toxicity_from, toxicity_to):
    Policy = apps.get_model("review", "Policy")
    Policy.objects.filter(**semantic_from).update(**semantic_to)
    for row in Policy.objects.all().only("pk", "toxicity_thresholds"):
        if row.toxicity_thresholds == toxicity_from:
            Policy.objects.filter(pk=row.pk).update(toxicity_thresholds=dict(toxicity_to))


def forwards(apps, schema_editor):
    _move(apps, OLD, NEW, OLD_TOXICITY, NEW_TOXICITY)


def backwards(apps, schema_editor):
    _move(apps, NEW, OLD, NEW_TOXICITY, OLD_TOXICITY)


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
