"""Fleet services: groups, heartbeats, stop, and the offline sweep with its hook."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.core.errors import ApplicationError, Conflict
from controlplane.fleet.models import Worker, WorkerGroup, WorkerStatus, parse_queue_name, queue_name_for
from controlplane.fleet.services import (
    fleet_sweep,
    worker_group_create,
    worker_group_delete,
    worker_stopped,
    workers_mark_offline,
)
from .support import beat
from tests.factories import make_company

pytestmark = pytest.mark.django_db


class TestWorkerGroups:
    def test_queue_name_is_company_and_group(self, ingest):
        assert ingest.queue_name == "wg.acme.ingest" == queue_name_for("acme", "ingest")
        assert parse_queue_name("wg.acme.ingest") == ("acme", "ingest")
        assert parse_queue_name("controlplane") is None
        assert parse_queue_name("wg.acme") is None

    @pytest.mark.parametrize("slug", ["Ingest", "in gest", "-ingest", "in.gest", "x" * 51, ""], ids=repr)
    def test_invalid_slug_is_rejected_with_path(self, company, slug):
        with pytest.raises(ApplicationError) as err:
            worker_group_create(company=company, slug=slug)
        assert err.value.path == "slug" and err.value.status_code == 400

    def test_duplicate_slug_in_same_company_conflicts(self, company, ingest):
        with pytest.raises(Conflict):
            worker_group_create(company=company, slug="ingest")

    def test_same_slug_in_another_company_is_fine(self, ingest):
        other = worker_group_create(company=make_company("globex"), slug="ingest")
        assert other.queue_name == "wg.globex.ingest"

    def test_group_created_after_worker_adopts_it(self, company):
        given = beat(queues=["wg.acme.late"])
        assert list(given.groups.all()) == []

        group = worker_group_create(company=company, slug="late")

        assert list(group.workers.all()) == [given]

    def test_delete_removes_group_and_membership(self, ingest):
        worker = beat()
        worker_group_delete(group=ingest)
        assert not WorkerGroup.objects.filter(pk=ingest.pk).exists()
        assert list(Worker.objects.get(pk=worker.pk).groups.all()) == []


class TestHeartbeat:
    def test_first_heartbeat_creates_worker_mapped_to_groups(self, ingest, transform):
        # given two groups of acme; when a worker reports both queues plus an unrelated one
        worker = beat(queues=["wg.acme.ingest", "wg.acme.transform", "controlplane", "wg.nobody.x"],
                      step_types=["noop", "http"], loaded_artifacts={"j1": "sha256:a"})

        # then the row holds what it reported and only known groups are mapped
        worker.refresh_from_db()
        assert worker.status == WorkerStatus.ONLINE and worker.is_live
        assert set(worker.groups.all()) == {ingest, transform}
        assert worker.queues == ["controlplane", "wg.acme.ingest", "wg.acme.transform", "wg.nobody.x"]
        assert worker.active_consumers == worker.queues
        assert (worker.concurrency, worker.pid, worker.software_version) == (2, 100, "test")
        assert worker.step_types == ["http", "noop"]
        assert worker.loaded_artifacts == {"j1": "sha256:a"}

    def test_next_heartbeat_updates_in_place(self, ingest, transform):
        first = beat(step_types=["noop"], loaded_artifacts={"j1": "d1"})
        started = first.started_at

        second = beat(queues=["wg.acme.transform"], concurrency=4, active_consumers=[])

        assert Worker.objects.count() == 1 and second.pk == first.pk
        second.refresh_from_db()
        assert list(second.groups.all()) == [transform]
        assert second.concurrency == 4 and second.active_consumers == []
        assert second.started_at == started and second.last_heartbeat > started
        # left as None: what was stored is kept
        assert second.step_types == ["noop"] and second.loaded_artifacts == {"j1": "d1"}

    def test_new_pid_resets_started_at(self, ingest):
        first = beat(pid=1, now=timezone.now() - timedelta(minutes=5))
        second = beat(pid=2)
        assert second.started_at > first.started_at

    def test_heartbeat_revives_offline_or_stopped_worker(self, ingest):
        beat(now=timezone.now() - timedelta(hours=1))
        workers_mark_offline()
        assert Worker.objects.get().status == WorkerStatus.OFFLINE

        worker = beat()

        assert worker.status == WorkerStatus.ONLINE and worker.is_live

    def test_stopped_marks_status_and_clears_cache(self, ingest):
        beat(loaded_artifacts={"j1": "d"})
        assert worker_stopped(hostname="w1@host") is True
        worker = Worker.objects.get()
        assert worker.status == WorkerStatus.STOPPED and not worker.is_live
        assert worker.loaded_artifacts == {} and worker.active_consumers == []
        assert worker_stopped(hostname="unknown@host") is False


class TestOfflineSweep:
    def test_stale_worker_goes_offline_and_hook_gets_hostnames(self, ingest, offline_calls, settings,
                                                                 django_capture_on_commit_callbacks):
        # given one fresh and two stale workers, and a stopped stale one
        settings.WORKER_OFFLINE_AFTER_S = 10
        now = timezone.now()
        beat("fresh@h", now=now - timedelta(seconds=2))
        beat("stale-b@h", now=now - timedelta(seconds=30))
        beat("stale-a@h", now=now - timedelta(seconds=11))
        beat("gone@h", now=now - timedelta(seconds=60))
        worker_stopped(hostname="gone@h")

        # when the sweep runs
        with django_capture_on_commit_callbacks(execute=True):
            marked = workers_mark_offline(now=now)

        # then only the stale online ones are offline and the hook saw them once, after commit
        assert marked == ["stale-a@h", "stale-b@h"]
        statuses = dict(Worker.objects.values_list("hostname", "status"))
        assert statuses == {"fresh@h": "online", "stale-a@h": "offline", "stale-b@h": "offline", "gone@h": "stopped"}
        assert offline_calls == [["stale-a@h", "stale-b@h"]]

    def test_nothing_stale_calls_no_hook(self, ingest, offline_calls, django_capture_on_commit_callbacks):
        beat()
        with django_capture_on_commit_callbacks(execute=True):
            assert fleet_sweep() == []
        assert offline_calls == []

    def test_second_sweep_does_not_report_again(self, ingest, offline_calls, django_capture_on_commit_callbacks):
        beat(now=timezone.now() - timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            assert fleet_sweep() == ["w1@host"]
            assert fleet_sweep() == []
        assert offline_calls == [["w1@host"]]

    def test_broken_hook_does_not_stop_others(self, ingest, offline_calls, django_capture_on_commit_callbacks):
        from controlplane.fleet import hooks

        def broken(sender, hostnames, **kwargs):
            raise RuntimeError("boom")

        hooks.workers_offline.connect(broken, weak=False, dispatch_uid="test.broken")
        try:
            beat(now=timezone.now() - timedelta(hours=1))
            with django_capture_on_commit_callbacks(execute=True):
                fleet_sweep()
        finally:
            hooks.workers_offline.disconnect(dispatch_uid="test.broken")
        assert offline_calls == [["w1@host"]]
