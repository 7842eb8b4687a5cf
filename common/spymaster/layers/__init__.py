"""The per-date layers (bronze → silver → gold), the vector-table writer (:mod:`.index`) and the pipeline that runs them."""
