rule probe:
    """One probe (declared in pgprobe.pipeline.declarations) on one agent at one iteration."""
    input:
        probe_inputs,
        stamp=stamp("probe"),
    output:
        dag.PATTERNS["probe"],
    params:
        slice=stage_slice("probe"),
        inputs=probe_input_args,
        args=PARAMS,
    threads: stage_threads("probe")
    resources:
        **stage_resources("probe"),
    log:
        dag.LOGS["probe"],
    shell:
        dag.COMMANDS["probe"] + " 2> {log}"


rule shard:
    """One block of a probe's work (params `shards:`); the probe job gathers its shards (pipeline/shards.py)."""
    input:
        shard_inputs,
        stamp=stamp("shard"),
    output:
        dag.PATTERNS["shard"],
    params:
        slice=stage_slice("shard"),
        inputs=shard_input_args,
        args=PARAMS,
    threads: stage_threads("shard")
    resources:
        **stage_resources("shard"),
    log:
        dag.LOGS["shard"],
    shell:
        dag.COMMANDS["shard"] + " 2> {log}"
