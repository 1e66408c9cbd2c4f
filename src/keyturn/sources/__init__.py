"""Token sources: one small class per grant, all built on :class:`~keyturn.sources.base.Source`."""
