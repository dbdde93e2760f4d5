"""The HTTP API: commands start and steer order sagas; reads come from Temporal and inventory."""
