"""Raw DBN files: decoding (:mod:`.dbnread`), placing them by their metadata (:mod:`.ingest`) and fetching them (:mod:`.download`)."""
