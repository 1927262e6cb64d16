"""The processors: faust workers that deduplicate and batch the raw topics."""
