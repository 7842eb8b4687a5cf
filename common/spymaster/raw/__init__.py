"""Raw DBN files: decoding (:mod:`.dbnread`), screening their records (:mod:`.quality`), placing them by their metadata (:mod:`.ingest`) and fetching them (:mod:`.download`)."""
