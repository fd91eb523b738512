"""Writes of the catalog. Views, the admin and workers change catalog rows only through these.

Role checks belong to the caller (API views check the member's role); services check the data.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.catalog import crypto, selectors
from controlplane.catalog.models import Blueprint, BlueprintVersion, JobTemplate, Secret
from controlplane.catalog.validation import blueprint_errors, job_template_errors
from controlplane.core.errors import ApplicationError, Conflict, NotFound
from controlplane.tenancy.models import Company
from pipelines.graph import graph_digest

logger = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024
_UNSET: Any = object()


def _full_clean(instance, *, what: str) -> None:
    """Field validators (name patterns, lengths) as a 400 with paths; uniqueness is checked apart."""
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = [
            {"path": field, "message": str(message), "code": getattr(message, "code", None) or "invalid"}
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
        first = errors[0]
        raise ApplicationError(f"{what} is invalid: {first['path']}: {first['message']}", path=first["path"], errors=errors) from None


def _name_taken(what: str, name: str) -> Conflict:
    return Conflict(f"a {what} named {name!r} already exists in this company; pick another name", code="name_taken", path="name")


# -- blueprints ---------------------------------------------------------------------------------


@transaction.atomic
def blueprint_create(*, company: Company, name: str, description: str = "", user=None) -> Blueprint:
    blueprint = Blueprint(company=company, name=name, description=description or "", created_by=user)
    _full_clean(blueprint, what="blueprint")
    if Blueprint.objects.filter(company=company, name=name).exists():
        raise _name_taken("blueprint", name)
    try:
        with transaction.atomic():
            blueprint.save()
    except IntegrityError:
        raise _name_taken("blueprint", name) from None
    return blueprint


@transaction.atomic
def blueprint_update(*, blueprint: Blueprint, name: str | None = None, description: str | None = None) -> Blueprint:
    """Change the description any time; the name only while nothing is published (graphs use it)."""
    if name is not None and name != blueprint.name:
        if blueprint.versions.exists():
            raise Conflict(
                f"blueprint {blueprint.name!r} has published versions that graphs refer to by name; "
                "create a new blueprint instead of renaming",
                code="blueprint_published",
                path="name",
            )
        if Blueprint.objects.filter(company_id=blueprint.company_id, name=name).exclude(pk=blueprint.pk).exists():
            raise _name_taken("blueprint", name)
        blueprint.name = name
    if description is not None:
        blueprint.description = description
    _full_clean(blueprint, what="blueprint")
    blueprint.save()
    return blueprint


@transaction.atomic
def blueprint_delete(*, blueprint: Blueprint) -> None:
    if blueprint.versions.exists():
        raise Conflict(
            f"blueprint {blueprint.name!r} has published versions; published versions are kept for good",
            code="blueprint_published",
        )
    blueprint.delete()


@transaction.atomic
def blueprint_publish(*, blueprint: Blueprint, document: Any, user) -> tuple[BlueprintVersion, bool]:
    """Publish `document` as the next version, or return the latest one if it is unchanged.

    Returns `(version, created)`. An invalid document raises `invalid_blueprint` with every
    problem and its path. Publishes of one blueprint are serialized by a row lock.
    """
    Blueprint.objects.select_for_update().filter(pk=blueprint.pk).first()
    latest = BlueprintVersion.objects.filter(blueprint=blueprint).order_by("-number").first()
    number = latest.number + 1 if latest else 1
    errors = blueprint_errors(
        document,
        name=blueprint.name,
        number=number,
        blueprints=selectors.blueprint_documents(blueprint.company_id),
        templates=selectors.job_template_documents(blueprint.company_id),
    )
    if errors:
        first = errors[0]
        where = f"{first['path']}: " if first["path"] else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ApplicationError(
            f"blueprint document is invalid: {where}{first['message']}{more}",
            code="invalid_blueprint",
            path=first["path"] or None,
            errors=errors,
        )
    digest = graph_digest(document)
    if latest is not None and latest.digest == digest:
        return latest, False
    version = BlueprintVersion.objects.create(
        blueprint=blueprint, number=number, document=document, digest=digest, published_by=user
    )
    logger.info("blueprint.published", extra={"blueprint_id": blueprint.pk, "version": version.ref, "digest": digest})
    return version, True


# -- job templates ------------------------------------------------------------------------------


def _check_job_template(template: JobTemplate) -> None:
    _full_clean(template, what="job template")
    errors = job_template_errors(defaults=template.defaults, param_schema=template.param_schema)
    if errors:
        first = errors[0]
        raise ApplicationError(
            f"job template is invalid: {first['path']}: {first['message']}",
            code="invalid_job_template",
            path=first["path"],
            errors=errors,
        )


@transaction.atomic
def job_template_create(
    *,
    company: Company,
    name: str,
    step_type: str,
    defaults: dict | None = None,
    param_schema: dict | None = None,
    description: str = "",
) -> JobTemplate:
    template = JobTemplate(
        company=company,
        name=name,
        step_type=step_type,
        defaults={} if defaults is None else defaults,
        param_schema={} if param_schema is None else param_schema,
        description=description or "",
    )
    _check_job_template(template)
    if JobTemplate.objects.filter(company=company, name=name).exists():
        raise _name_taken("job template", name)
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        raise _name_taken("job template", name) from None
    return template


@transaction.atomic
def job_template_update(
    *,
    template: JobTemplate,
    name: str = _UNSET,
    step_type: str = _UNSET,
    defaults: dict = _UNSET,
    param_schema: dict = _UNSET,
    description: str = _UNSET,
) -> JobTemplate:
    """Change the given fields; the planner picks the change up at the next plan."""
    changes = {
        "name": name,
        "step_type": step_type,
        "defaults": defaults,
        "param_schema": param_schema,
        "description": description,
    }
    for field, value in changes.items():
        if value is not _UNSET:
            setattr(template, field, value)
    _check_job_template(template)
    if JobTemplate.objects.filter(company_id=template.company_id, name=template.name).exclude(pk=template.pk).exists():
        raise _name_taken("job template", template.name)
    template.save()
    return template


@transaction.atomic
def job_template_delete(*, template: JobTemplate) -> None:
    template.delete()


# -- secrets ------------------------------------------------------------------------------------


def _check_secret_value(value: Any) -> None:
    # Never echo the value: messages describe it, they do not quote it.
    if not isinstance(value, str) or value == "":
        raise ApplicationError("secret value must be a non-empty string", path="value")
    if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
        raise ApplicationError(f"secret value is larger than {MAX_SECRET_BYTES} bytes", path="value")


@transaction.atomic
def secret_create(*, company: Company, name: str, value: str, user=None) -> Secret:
    """A new secret; `name_taken` (409) if the name exists: rotate it with `secret_set` instead."""
    if Secret.objects.filter(company=company, name=name).exists():
        raise Conflict(
            f"a secret named {name!r} already exists in this company; PUT a new value to rotate it",
            code="name_taken",
            path="name",
        )
    secret, _created = secret_set(company=company, name=name, value=value, user=user)
    return secret


@transaction.atomic
def secret_set(*, company: Company, name: str, value: str, user=None) -> tuple[Secret, bool]:
    """Create the secret, or rotate its value if it exists. Returns `(secret, created)`."""
    _check_secret_value(value)
    secret = Secret.objects.select_for_update().filter(company=company, name=name).first()
    created = secret is None
    if created:
        secret = Secret(company=company, name=name, created_by=user)
        _full_clean(secret, what="secret")
    else:
        secret.rotated_at = timezone.now()
    secret.ciphertext = crypto.encrypt(value)
    try:
        with transaction.atomic():
            secret.save()
    except IntegrityError:
        raise Conflict(f"secret {name!r} was created concurrently; try again", code="name_taken", path="name") from None
    logger.info(
        "secret.created" if created else "secret.rotated",
        extra={"company_id": company.pk, "secret": name, "actor_id": getattr(user, "pk", None)},
    )
    return secret, created


@transaction.atomic
def secret_delete(*, secret: Secret) -> None:
    logger.info("secret.deleted", extra={"company_id": secret.company_id, "secret": secret.name})
    secret.delete()


def secret_resolve(*, company_id: int, name: str) -> str:
    """The plaintext value of a company's secret; the only reader (workers, at run time).

    `NotFound` (code `secret_not_found`) if there is no such secret. Never log the result.
    """
    ciphertext = Secret.objects.filter(company_id=company_id, name=name).values_list("ciphertext", flat=True).first()
    if ciphertext is None:
        raise NotFound(f"secret {name!r} not found in company {company_id}", code="secret_not_found", path=name)
    try:
        return crypto.decrypt(ciphertext)
    except crypto.SecretUndecryptable as exc:
        raise ApplicationError(f"secret {name!r}: {exc}", code="secret_undecryptable") from None
