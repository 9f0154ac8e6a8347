"""The run store: the on-disk run format, read (``reader``), written atomically (``recorder``) and
cached (``cache``). Everything above it sees runs only through these modules."""
