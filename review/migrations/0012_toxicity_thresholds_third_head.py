"""The toxicity stand-in's third head (docs/review.md, "Toxicity") and its thresholds.

A project whose toxicity thresholds are still the earlier defaults moves to the ones chosen for
the new head on the dev split (``review.holds.DEFAULT_TOXICITY_THRESHOLDS``); the earlier values
would hold many harmless texts with it. A threshold an admin changed stays as it is.
"""

from django.db import migrations

OLD = {
    "toxicity": 0.8,
    "severe_toxicity": 0.3,
    "obscene": 0.3,
    "threat": 0.4,
    "insult": 0.3,
    "identity_attack": 0.3,
    "sexual_explicit": 0.5,
}
# Frozen here: a later change of the defaults is a migration of its own.
NEW = {
    "toxicity": 0.85,
    "severe_toxicity": 0.95,
    "obscene": 0.95,
    "threat": 0.95,
    "insult": 0.85,
    "identity_attack": 0.5,
    "sexual_explicit": 0.95,
}


def _move(apps, old, new):
    Policy = apps.get_model("review", "Policy")
    for row in Policy.objects.all().only("pk", "toxicity_thresholds"):
        if row.toxicity_thresholds == old:
            Policy.objects.filter(pk=row.pk).update(toxicity_thresholds=dict(new))


def forwards(apps, schema_editor):
    _move(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _move(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0011_policy_quality_hold"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
