"""Create (or reuse) a user, a company they own, and their API token; print the token.

    ./manage.py bootstrap_tenant --username alice --password 's3cret-pass' --company acme

Safe to run again: an existing user is reused (its password set when --password is given) and an
existing company is reused only if the user already owns it. Progress goes to stderr and the bare
token to stdout, so `TOKEN=$(./manage.py bootstrap_tenant ...)` works.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from controlplane.core.errors import ApplicationError
from controlplane.tenancy.services import tenant_bootstrap


class Command(BaseCommand):
    help = "Create or reuse a user, a company they own and an API token; prints the token on stdout."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True, help="The user to create or reuse.")
        parser.add_argument("--password", help="Required for a new user; sets the password of an existing one.")
        parser.add_argument("--email", help="The user's e-mail address.")
        parser.add_argument("--company", required=True, help="Company slug (lowercase letters, digits, hyphens).")
        parser.add_argument("--company-name", help="Company display name (default: the slug).")

    def handle(self, *args, **options):
        try:
            result = tenant_bootstrap(
                username=options["username"],
                password=options["password"],
                email=options["email"],
                company_slug=options["company"],
                company_name=options["company_name"],
            )
        except ApplicationError as exc:
            where = f"--{exc.path}: " if exc.path else ""
            raise CommandError(f"{where}{exc.detail}") from exc
        user_note = "created user" if result.user_created else "reusing user"
        company_note = "created company" if result.company_created else "reusing company"
        self.stderr.write(f"{user_note} {result.user.get_username()}")
        self.stderr.write(f"{company_note} {result.company.slug} (owner: {result.user.get_username()})")
        self.stderr.write("API token (send as 'Authorization: Token <token>'):")
        self.stdout.write(result.token)
