"""The anchors the gateway is measured against: a seed-style FastAPI app and nginx+nchan."""
