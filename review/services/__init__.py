"""Writes of the review app's automated half, one module each.

- :mod:`.policies`: a project's check policy;
- :mod:`.adapters`: each check run on a draft's text, shaped for a CheckResult;
- :mod:`.pipeline`: starting, running and routing a draft's checks;
- :mod:`.imports`: the archive's imports;
- :mod:`.embedding`: the archive's sentence vectors for the semantic check.

The editorial writes (edits, comments, assignments) are in ``review.editorial`` and the moves of
a draft in ``review.lifecycle``. Callers may import the functions from here.
"""

from __future__ import annotations

from review.services.embedding import embed_enqueue, get_embedder, passages_embed
from review.services.imports import (
    document_delete,
    import_path,
    import_rows_direct,
    import_run_claim,
    import_run_create,
    import_run_execute,
    imports_sweep,
)
from review.services.pipeline import (
    checks_sweep,
    draft_checks_rerun,
    draft_checks_run,
    draft_checks_start,
    resume_pending,
)
from review.services.policies import policy_get, policy_update, policy_view

__all__ = [
    "checks_sweep",
    "document_delete",
    "draft_checks_rerun",
    "draft_checks_run",
    "draft_checks_start",
    "embed_enqueue",
    "get_embedder",
    "import_path",
    "import_rows_direct",
    "import_run_claim",
    "import_run_create",
    "import_run_execute",
    "imports_sweep",
    "passages_embed",
    "policy_get",
    "policy_update",
    "policy_view",
    "resume_pending",
]
