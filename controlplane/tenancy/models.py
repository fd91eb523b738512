"""Tenancy: companies own projects; users reach a company only through a membership and its role."""
from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "use 1-50 lowercase letters, digits and inner hyphens (it becomes part of queue names)",
)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self.value]

    def at_least(self, minimum: "Role") -> bool:
        return self.rank >= Role(minimum).rank


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3, Role.OWNER: 4}


class Company(models.Model):
    slug = models.SlugField(
        max_length=50, unique=True, validators=[slug_validator], help_text="Stable short name; part of queue names."
    )
    name = models.CharField(max_length=200, help_text="Display name.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the company was created.")

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return self.slug


class Project(models.Model):
    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="projects", help_text="The tenant that owns the project."
    )
    slug = models.SlugField(max_length=50, validators=[slug_validator], help_text="Unique within the company.")
    name = models.CharField(max_length=200, help_text="Display name.")
    description = models.TextField(blank=True, default="", help_text="What the project is for.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the project was created.")

    class Meta:
        ordering = ["company__slug", "slug"]
        constraints = [models.UniqueConstraint(fields=["company", "slug"], name="project_slug_unique_per_company")]

    def __str__(self) -> str:
        return f"{self.company.slug}/{self.slug}"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        help_text="The member.",
    )
    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="memberships", help_text="The company the user belongs to."
    )
    role = models.CharField(
        max_length=10,
        choices=Role.choices,
        default=Role.VIEWER,
        help_text="owner > admin > editor > viewer: viewers read, editors edit and publish, admins manage "
        "projects and members, owners everything.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the membership was granted.")

    class Meta:
        ordering = ["company__slug", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "company"], name="one_membership_per_user_and_company"),
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="membership_role_is_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.company.slug} ({self.role})"
