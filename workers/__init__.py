"""Process entry points that do I/O around the core: order workers, the engine loop, the reconciler."""
