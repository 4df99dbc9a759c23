"""The generation API: jobs (create, status with the text so far, cancel), templates, models."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from contentstudio.api import etag_response, keyset_page_response, validation_response
from contentstudio.selectors import project_get, project_list
from generation import languages, selectors, services
from generation.diversity import candidate_diversity
from generation.models import GenerationJob, JobStatus, LanguageModel, PromptTemplateVersion


class JobCreateIn(serializers.Serializer):
    template_version = serializers.IntegerField(required=False, allow_null=True)
    template = serializers.IntegerField(
        required=False, allow_null=True, help_text="A template id: its current version is used."
    )
    variables = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    seed_text = serializers.CharField(required=False, allow_blank=True, default="")
    model = serializers.IntegerField(required=False, allow_null=True)
    settings = serializers.DictField(required=False)
    n_candidates = serializers.IntegerField(required=False, default=1)
    seed = serializers.IntegerField(required=False, allow_null=True)
    background = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Archive passages to retrieve for the brief and put into the prompt "
        "(0: none; empty: as many as the template asks for).",
    )
    topup = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="More candidates to draw when none of the job's own covers half of the "
        "brief's key terms (0: none, at most 4; empty: as the template says, 0 for a free "
        "prompt).",
    )


class CandidateOut(serializers.Serializer):
    index = serializers.IntegerField()
    seed = serializers.IntegerField()
    status = serializers.CharField()
    text = serializers.CharField()
    tokens = serializers.IntegerField()
    tokens_per_second = serializers.FloatField(allow_null=True)
    finish_reason = serializers.CharField()
    draft_id = serializers.IntegerField(allow_null=True)
    draft_url = serializers.CharField(allow_null=True)
    # {"score", "reasons", "off_brief", "verify", "contradictions", "best", "rank"} (rank: the
    # place in the job's on-brief-first order, 0 first); null before the draft is written.
    quality = serializers.DictField(allow_null=True)


class JobOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.CharField()
    status = serializers.CharField()
    error = serializers.CharField()
    model = serializers.CharField()
    n_candidates = serializers.IntegerField()
    base_seed = serializers.IntegerField()
    settings = serializers.DictField()
    # Archive passages asked for as background (0: none); what was given is on each draft.
    background = serializers.IntegerField()
    # More candidates drawn when none of the first covered the brief (0: none), and what was
    # done: {"drawn", "first", "covered", "note"} ({} when nothing was drawn).
    topup = serializers.IntegerField()
    topup_record = serializers.DictField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    cancel_requested = serializers.BooleanField()
    seq = serializers.IntegerField()
    candidates = CandidateOut(many=True)
    # How different the candidates are (1 - mean pairwise 3-word-shingle Jaccard); informs the
    # editor choosing between them, never holds a draft.
    diversity = serializers.DictField()
    # Candidate indexes best first: on-brief ones before off-brief ones, each group by quality
    # score (generation.quality.rank_order); unscored ones last.
    best_first = serializers.ListField(child=serializers.IntegerField())


class JobWarningOut(serializers.Serializer):
    # "model" for a language the model does not declare (code "language_mismatch").
    field = serializers.CharField()
    code = serializers.CharField()
    language = serializers.CharField()
    message = serializers.CharField()


class JobCreateOut(JobOut):
    # What the studio noticed but did not refuse: the job is created (docs/generation.md).
    warnings = JobWarningOut(many=True)


class JobPageOut(serializers.Serializer):
    next = serializers.CharField(allow_null=True)
    results = JobOut(many=True)


def job_out(job: GenerationJob) -> dict:
    snapshot = selectors.job_snapshot(job_id=job.pk)
    return JobOut(
        {
            "id": job.pk,
            "project": job.project.slug,
            "status": snapshot["status"],
            "error": snapshot["error"],
            "model": job.model.name,
            "n_candidates": job.n_candidates,
            "base_seed": job.base_seed,
            "settings": job.settings,
            "background": job.background,
            "topup": job.topup,
            "topup_record": job.topup_record,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "cancel_requested": snapshot["cancel_requested"],
            "seq": snapshot["seq"],
            "candidates": snapshot["candidates"],
            "diversity": candidate_diversity(
                [(c["index"], c["text"]) for c in snapshot["candidates"]]
            ),
            "best_first": [c["index"] for c in selectors.best_first(snapshot["candidates"])],
        }
    ).data


def _job_or_404(request: Request, job_id: int) -> GenerationJob:
    job = selectors.job_for_user(user=request.user, job_id=job_id)
    if job is None:
        raise Http404("No such job.")
    return job


JOB_ORDERINGS = ["-created_at", "created_at"]


class JobListCreateApi(APIView):
    @extend_schema(
        responses=JobPageOut,
        parameters=[
            OpenApiParameter("status", str, enum=[s.value for s in JobStatus]),
            OpenApiParameter(
                "ordering", str, enum=JOB_ORDERINGS, description="Newest first by default."
            ),
            OpenApiParameter("cursor", str, description="From the previous page's next link."),
            OpenApiParameter("limit", int, description="1 to 200 (default 50)."),
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        """The project's jobs in keyset pages: each page as cheap as the first, and a job created
        while a client pages never shifts the pages it has not read yet."""
        project, _ = project_get(user=request.user, slug=slug)
        ordering = request.query_params.get("ordering") or "-created_at"
        errors: dict[str, list[str]] = {}
        if ordering not in JOB_ORDERINGS:
            errors["ordering"] = [f"Use one of {', '.join(JOB_ORDERINGS)}."]
        wanted = request.query_params.get("status")
        if wanted and wanted not in JobStatus.values:
            errors["status"] = [f"Use one of {', '.join(JobStatus.values)}."]
        if errors:
            return validation_response(errors)
        jobs = selectors.project_jobs_all(project_id=project.pk)
        if wanted:
            jobs = jobs.filter(status=wanted)
        return keyset_page_response(
            request, jobs, ordering=ordering, serialize=lambda page: [job_out(j) for j in page]
        )

    @extend_schema(request=JobCreateIn, responses={201: JobCreateOut})
    def post(self, request: Request, slug: str) -> Response:
        project, _ = project_get(user=request.user, slug=slug)
        data = JobCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        payload = data.validated_data
        version = None
        if payload.get("template_version"):
            version = PromptTemplateVersion.objects.filter(
                pk=payload["template_version"], template__project=project
            ).first()
            if version is None:
                return Response(
                    {"template_version": ["No such template version in this project."]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
        elif payload.get("template"):
            template = project.templates.filter(pk=payload["template"]).first()
            version = template.current_version if template else None
            if version is None:
                return Response(
                    {"template": ["No such template in this project."]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
        model = None
        if payload.get("model"):
            model = LanguageModel.objects.filter(pk=payload["model"]).first()
            if model is None:
                return validation_response({"model": ["No such model."]})
        job = services.job_create(
            project=project,
            user=request.user,
            model=model,
            template_version=version,
            variables=payload.get("variables") or {},
            seed_text=payload.get("seed_text", ""),
            settings=payload.get("settings") or {},
            n_candidates=payload.get("n_candidates", 1),
            base_seed=payload.get("seed"),
            background=payload.get("background"),
            topup=payload.get("topup"),
        )
        warning = languages.language_warning(
            model=job.model,
            template_version=version,
            variables=payload.get("variables") or {},
            seed_text=payload.get("seed_text", ""),
        )
        return Response(
            {**job_out(job), "warnings": [warning] if warning else []},
            status=status.HTTP_201_CREATED,
        )


class JobDetailApi(APIView):
    @extend_schema(responses=JobOut)
    def get(self, request: Request, job_id: int) -> Response:
        return etag_response(request, job_out(_job_or_404(request, job_id)))


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobOut)
    def post(self, request: Request, job_id: int) -> Response:
        job = services.job_cancel(job=_job_or_404(request, job_id), user=request.user)
        return Response(job_out(job))


class TemplateOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    version = serializers.IntegerField()
    version_id = serializers.IntegerField()
    variables = serializers.ListField(child=serializers.DictField())
    background = serializers.IntegerField(help_text="Archive passages a job asks for (0: none).")
    topup = serializers.IntegerField(
        help_text="More candidates a job draws when none of its own covers the brief (0: none)."
    )


class TemplateListApi(APIView):
    @extend_schema(responses=TemplateOut(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project, _ = project_get(user=request.user, slug=slug)
        rows = []
        for template in selectors.project_templates(project_id=project.pk):
            version = template.current_version
            if version is None:
                continue
            rows.append(
                {
                    "id": template.pk,
                    "name": template.name,
                    "content_type": template.content_type,
                    "version": version.number,
                    "version_id": version.pk,
                    "variables": version.variables,
                    "background": version.background,
                    "topup": version.topup,
                }
            )
        return Response(TemplateOut(rows, many=True).data)


class ModelOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    is_default = serializers.BooleanField()
    max_new_tokens_limit = serializers.IntegerField()
    defaults = serializers.DictField()
    # ISO 639-1 codes of the languages the model writes (["*"]: any; []: not declared).
    languages = serializers.ListField(child=serializers.CharField())


class ModelListApi(APIView):
    @extend_schema(responses=ModelOut(many=True))
    def get(self, request: Request) -> Response:
        rows = [
            {
                "id": m.pk,
                "name": m.name,
                "is_default": m.is_default,
                "max_new_tokens_limit": m.max_new_tokens_limit,
                "defaults": m.default_settings(),
                "languages": list(m.language_codes),
            }
            # Shared models, and those tuned for a project the caller may see: a token sees
            # its own project's only, whatever else its creator belongs to.
            for m in selectors.models_listed(
                projects=project_list(user=request.user), enabled_only=True
            )
        ]
        return Response(ModelOut(rows, many=True).data)
