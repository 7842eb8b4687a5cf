"""The per-date layers (bronze → silver → gold), the vector-table writer (:mod:`.index`), housekeeping (:mod:`.vacuum`) and the pipeline that runs them."""
