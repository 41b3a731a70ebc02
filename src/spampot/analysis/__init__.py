"""Analysis: the warehouse (``spampot ingest``) and the paper's tables (``spampot report``)."""
