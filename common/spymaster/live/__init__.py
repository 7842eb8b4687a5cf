"""Live: the same answers while the market moves (an incremental engine, its sources and its push)."""
