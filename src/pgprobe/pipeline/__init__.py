"""The pipeline layer: declarations of probes and figures, the DAG both runners follow, params
loading and validation, NetCDF I/O with provenance, aggregation.  Imports neither torch nor
gymnasium (params validation imports gymnasium only to check environment ids)."""
