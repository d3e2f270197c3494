rule figure:
    """Render a figure from its aggregate only (the paper run's to figures/, any other to figures/<run>/)."""
    input:
        data=dag.PATTERNS["aggregate"].replace("{run}", RUN),
        stamp=stamp("figure"),
    output:
        dag.figure_pattern(RUN),
    params:
        slice=stage_slice("figure"),
    threads: stage_threads("figure")
    resources:
        **stage_resources("figure"),
    log:
        dag.LOGS["figure"].replace("{run}", RUN),
    shell:
        dag.COMMANDS["figure"] + " 2> {log}"
