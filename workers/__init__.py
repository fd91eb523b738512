"""Celery workers: `celery -A workers worker -Q wg.<company>.<group>` runs one worker group's worker."""
from workers.celery import app

__all__ = ["app"]
