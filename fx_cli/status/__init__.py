"""The aggregator's read-only status API and live page (``/status``, ``/clients``, ``/metrics``, ``/events``)."""
