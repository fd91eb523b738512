"""Writes of the tenancy app: companies, projects and memberships.

Role rules: admins manage projects and members; only owners grant or revoke the owner role and
delete the company; a company always keeps at least one owner. Deleting a project or company that
holds published workflow versions is refused (409): versions are history and are never deleted.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError
from rest_framework.authtoken.models import Token

from controlplane.core.errors import ApplicationError, Conflict, PermissionDenied
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Company, Membership, Project, Role, slug_validator


def check_slug(slug: str, *, path: str = "slug") -> str:
    """The slug, or a 400 naming `path` when it is not a valid slug."""
    try:
        slug_validator(slug)
    except DjangoValidationError as exc:
        raise ApplicationError(f"{slug!r}: {exc.messages[0]}", code="invalid_slug", path=path)
    return slug


def _has_versions(**scope) -> bool:
    from controlplane.workflows.models import WorkflowVersion  # workflows depends on tenancy, not back

    return WorkflowVersion.objects.filter(**scope).exists()


def delete_or_conflict(obj, *, what: str) -> None:
    """Delete `obj`, or 409 naming what still refers to it (history other apps keep with PROTECT)."""
    try:
        with transaction.atomic():
            obj.delete()
    except (ProtectedError, RestrictedError) as exc:
        kinds = sorted({str(row._meta.verbose_name_plural) for row in exc.args[1]})
        raise Conflict(
            f"the {what} is still referred to by {', '.join(kinds)}, which are kept as history; archive instead",
            code="has_dependents",
        )


# Companies ---------------------------------------------------------------------------------------


@transaction.atomic
def company_create(*, user, slug: str, name: str) -> Company:
    """A new company with `user` as its owner."""
    check_slug(slug)
    if Company.objects.filter(slug=slug).exists():
        raise Conflict(f"company slug {slug!r} is taken; choose another", code="slug_taken", path="slug")
    try:
        with transaction.atomic():
            company = Company.objects.create(slug=slug, name=name)
    except IntegrityError:  # a concurrent create won the race
        raise Conflict(f"company slug {slug!r} is taken; choose another", code="slug_taken", path="slug")
    Membership.objects.create(user=user, company=company, role=Role.OWNER)
    return company


@transaction.atomic
def company_update(*, user, company: Company, name: str) -> Company:
    require_role(user, company.id, Role.ADMIN, what="company")
    company.name = name
    company.save(update_fields=["name"])
    return company


@transaction.atomic
def company_delete(*, user, company: Company) -> None:
    require_role(user, company.id, Role.OWNER, what="company")
    if _has_versions(workflow__project__company=company):
        raise Conflict(
            "the company has published workflow versions, which are never deleted; archive its workflows instead",
            code="has_versions",
        )
    delete_or_conflict(company, what="company")


# Projects ----------------------------------------------------------------------------------------


@transaction.atomic
def project_create(*, user, company: Company, slug: str, name: str, description: str = "") -> Project:
    require_role(user, company.id, Role.ADMIN, what="company")
    check_slug(slug)
    if Project.objects.filter(company=company, slug=slug).exists():
        raise Conflict(f"the company already has a project {slug!r}", code="slug_taken", path="slug")
    return Project.objects.create(company=company, slug=slug, name=name, description=description)


@transaction.atomic
def project_update(
    *, user, project: Project, slug: str | None = None, name: str | None = None, description: str | None = None
) -> Project:
    require_role(user, project.company_id, Role.ADMIN, what="project")
    if slug is not None and slug != project.slug:
        check_slug(slug)
        if Project.objects.filter(company_id=project.company_id, slug=slug).exists():
            raise Conflict(f"the company already has a project {slug!r}", code="slug_taken", path="slug")
        project.slug = slug
    if name is not None:
        project.name = name
    if description is not None:
        project.description = description
    project.save()
    return project


@transaction.atomic
def project_delete(*, user, project: Project) -> None:
    require_role(user, project.company_id, Role.ADMIN, what="project")
    if _has_versions(workflow__project=project):
        raise Conflict(
            "the project has published workflow versions, which are never deleted; archive its workflows instead",
            code="has_versions",
        )
    delete_or_conflict(project, what="project")


# Memberships -------------------------------------------------------------------------------------


def _owner_count(company_id: int) -> int:
    # Lock the owners' rows so two concurrent demotions cannot both see "another owner is left".
    return len(
        list(Membership.objects.select_for_update().filter(company_id=company_id, role=Role.OWNER).values("id"))
    )


def _require_owner_for(actor_role: Role, *roles: str) -> None:
    if Role.OWNER in roles and actor_role != Role.OWNER:
        raise PermissionDenied("only owners grant or revoke the owner role", code="insufficient_role")


@transaction.atomic
def membership_add(*, user, company: Company, username: str, role: Role) -> Membership:
    """Add an existing user by username (looked up only after the caller proved to be an admin)."""
    actor_role = require_role(user, company.id, Role.ADMIN, what="company")
    _require_owner_for(actor_role, role)
    member = get_user_model().objects.filter(username=username).first()
    if member is None:
        raise ApplicationError(f"there is no user {username!r}", code="unknown_user", path="username")
    if Membership.objects.filter(company=company, user=member).exists():
        raise Conflict(f"{member.get_username()} is already a member", code="already_member", path="username")
    return Membership.objects.create(company=company, user=member, role=role)


@transaction.atomic
def membership_change(*, user, membership: Membership, role: Role) -> Membership:
    actor_role = require_role(user, membership.company_id, Role.ADMIN, what="company")
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == role:
        return membership
    _require_owner_for(actor_role, membership.role, role)
    if membership.role == Role.OWNER and _owner_count(membership.company_id) <= 1:
        raise Conflict("a company keeps at least one owner; make someone else owner first", code="last_owner")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, user, membership: Membership) -> None:
    actor_role = require_role(user, membership.company_id, Role.ADMIN, what="company")
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _require_owner_for(actor_role, membership.role)
    if membership.role == Role.OWNER and _owner_count(membership.company_id) <= 1:
        raise Conflict("a company keeps at least one owner; make someone else owner first", code="last_owner")
    membership.delete()


# Bootstrap ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    user: object
    company: Company
    token: str
    user_created: bool
    company_created: bool


@transaction.atomic
def tenant_bootstrap(
    *,
    username: str,
    company_slug: str,
    password: str | None = None,
    email: str | None = None,
    company_name: str | None = None,
) -> Bootstrap:
    """A user (created or reused), a company they own, and their API token. Safe to run again.

    A new user needs a password; an existing user's password is set when one is given. An existing
    company is reused only if the user already owns it, so this never takes over someone's company.
    """
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    user_created = user is None
    if user_created:
        if not password:
            raise ApplicationError(f"user {username!r} does not exist; give --password to create it", path="password")
        user = User(username=username, email=email or "")
    if password:
        try:
            validate_password(password, user)
        except DjangoValidationError as exc:
            raise ApplicationError("; ".join(exc.messages), code="weak_password", path="password")
        user.set_password(password)
    if email is not None:
        user.email = email
    user.save()

    company = Company.objects.filter(slug=company_slug).first()
    company_created = company is None
    check_slug(company_slug, path="company")
    if company_created:
        company = company_create(user=user, slug=company_slug, name=company_name or company_slug)
    else:
        role = Membership.objects.filter(company=company, user=user).values_list("role", flat=True).first()
        if role != Role.OWNER:
            raise Conflict(
                f"company {company_slug!r} exists and {username!r} is not its owner; choose another company slug",
                code="slug_taken",
                path="company",
            )
        if company_name and company.name != company_name:
            company.name = company_name
            company.save(update_fields=["name"])
    token, _ = Token.objects.get_or_create(user=user)
    return Bootstrap(
        user=user, company=company, token=token.key, user_created=user_created, company_created=company_created
    )
