"""Request and response shapes of the tenancy API."""
from __future__ import annotations

from rest_framework import serializers

from controlplane.tenancy.models import Company, Membership, Project, Role, slug_validator

MAX_ID = 2**63 - 1


def id_field(**kwargs) -> serializers.IntegerField:
    """A database id: a positive integer that fits a bigint (larger ones are a 400, never a 500)."""
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def slug_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=50, validators=[slug_validator], **kwargs)


# Companies


class CompanyOutSerializer(serializers.ModelSerializer):
    role = serializers.CharField(source="my_role", read_only=True, help_text="Your role in the company.")

    class Meta:
        model = Company
        fields = ["id", "slug", "name", "created_at", "role"]


class CompanyCreateSerializer(serializers.Serializer):
    slug = slug_field(help_text="Stable short name, unique across the installation; part of queue names.")
    name = serializers.CharField(max_length=200, help_text="Display name.")


class CompanyUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="Display name.")


# Projects


class ProjectOutSerializer(serializers.ModelSerializer):
    company_slug = serializers.CharField(source="company.slug", read_only=True, help_text="The company's slug.")

    class Meta:
        model = Project
        fields = ["id", "company", "company_slug", "slug", "name", "description", "created_at"]


class ProjectFilterSerializer(serializers.Serializer):
    company = id_field(required=False, help_text="Only projects of this company.")


class ProjectCreateSerializer(serializers.Serializer):
    company = id_field(help_text="Id of the company that owns the project; you must be its admin or owner.")
    slug = slug_field(help_text="Unique within the company.")
    name = serializers.CharField(max_length=200, help_text="Display name.")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=10_000, help_text="What the project is for."
    )


class ProjectUpdateSerializer(serializers.Serializer):
    slug = slug_field(required=False, help_text="Unique within the company.")
    name = serializers.CharField(required=False, max_length=200, help_text="Display name.")
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=10_000, help_text="What the project is for."
    )


class ProjectReplaceSerializer(serializers.Serializer):
    slug = slug_field(help_text="Unique within the company.")
    name = serializers.CharField(max_length=200, help_text="Display name.")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=10_000, help_text="What the project is for."
    )


# Members


class MembershipOutSerializer(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id", read_only=True, help_text="The member's user id.")
    username = serializers.CharField(source="user.username", read_only=True, help_text="The member's username.")

    class Meta:
        model = Membership
        fields = ["user", "username", "role", "created_at"]


class MembershipAddSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, help_text="The existing user to add.")
    role = serializers.ChoiceField(
        choices=Role.choices, default=Role.VIEWER, help_text="Their role; only owners grant owner."
    )


class MembershipChangeSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, help_text="The new role; only owners grant or revoke owner.")
