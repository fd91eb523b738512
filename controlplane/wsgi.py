import os

from django.core.wsgi import get_wsgi_application

from controlplane.core import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
# Before the app builds its middleware chain: tracing adds one (nothing happens when it is off).
telemetry.instrument_web()
application = get_wsgi_application()
