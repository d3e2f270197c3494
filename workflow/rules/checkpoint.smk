rule checkpoint:
    """Replay iteration t from the snapshot at or before it: the agent at theta_t, its batch, its step."""
    input:
        snapshots=dag.PATTERNS["snapshots"],
        stamp=stamp("checkpoint"),
    output:
        dag.PATTERNS["checkpoint"],
    params:
        slice=stage_slice("checkpoint"),
        train_dir=lambda w: dag.agent_dir(w.run, w.env, w.algo, w.seed),
        args=PARAMS,
    threads: stage_threads("checkpoint")
    resources:
        **stage_resources("checkpoint"),
    log:
        dag.LOGS["checkpoint"],
    shell:
        dag.COMMANDS["checkpoint"] + " 2> {log}"
