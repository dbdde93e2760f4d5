"""The dev harness: what ``make up``, the tests, the chaos run and the benchmarks use to run the
system on one machine (Temporal's dev server, the workers, the API). Not part of what is deployed:
the image and the compose file run ``worker.py`` and ``api`` directly."""
