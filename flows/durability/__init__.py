"""What makes runs durable: storage paths, process identity, the run journal and records,
crash detection, resume preparation, the cache key policies, locks and the cache index."""
