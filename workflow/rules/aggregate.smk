rule aggregate:
    """A figure's inputs (probe results or training logs) combined by coordinates and summarised."""
    input:
        data=aggregate_inputs,
        stamp=stamp("aggregate"),
    output:
        dag.PATTERNS["aggregate"],
    params:
        slice=stage_slice("aggregate"),
        args=PARAMS,
    threads: stage_threads("aggregate")
    resources:
        **stage_resources("aggregate"),
    log:
        dag.LOGS["aggregate"],
    shell:
        dag.COMMANDS["aggregate"] + " 2> {log}"
