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
