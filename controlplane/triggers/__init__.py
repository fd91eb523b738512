"""Triggers: runs that start themselves (issue #12: schedules, webhooks, chaining).

Schedules and chaining are declared in the graph document (validated by `pipelines.triggers`)::

    schedules:
      - {name: nightly, cron: "0 2 * * *", timezone: Europe/Paris, overlap: skip, catchup_window_s: 3600}
      - {name: ping, every_s: 30, overlap: buffer_one, input: {kind: ping}}
    on: {workflow: ingest, status: succeeded}     # or a list; status succeeded | failed | any

The plan shows them (`+ schedule nightly 0 2 * * * Europe/Paris`, `~`, `-`); apply registers them as
django-celery-beat PeriodicTasks (`flowplane.schedule_fire`) for the deployment and removes the ones
the version no longer declares (`schedules: []` removes all); pause disables, resume enables,
undeploy removes them. A loop of chained workflows (`a -> b -> a`, also through several) is a plan
error at path `on`. Runs record `trigger` (schedule | webhook | workflow) and `trigger_details`.

Webhooks are managed by editors at `/api/v1/webhooks` (the secret is shown at create and rotate
only) and receive at `POST /api/v1/hooks/{token}`::

    TS=$(date +%s); BODY='{"order": 7}'
    SIG=sha256=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
    curl -X POST "$BASE/api/v1/hooks/$TOKEN" -H 'Content-Type: application/json' \\
         -H "X-Flowplane-Timestamp: $TS" -H "X-Flowplane-Signature: $SIG" -H "X-Flowplane-Delivery: $(uuidgen)" \\
         -d "$BODY"

GitHub deliveries (`X-Hub-Signature-256`, `X-GitHub-Delivery`) are accepted as they come; a hook
with a `branch` starts runs only for pushes to that branch. The beat task `flowplane.triggers_sweep`
(every `TRIGGERS_SWEEP_INTERVAL_S`, 5 s) starts buffered schedule fires and chained runs.
"""
