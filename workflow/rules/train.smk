rule train:
    """One agent = (env, algo, seed): training log, snapshots every train.save_every iterations."""
    input:
        stamp=stamp("train"),
    output:
        log=dag.PATTERNS["train"],
        snapshots=directory(dag.PATTERNS["snapshots"]),
    params:
        slice=stage_slice("train"),
        out=lambda w: dag.agent_dir(w.run, w.env, w.algo, w.seed),
        args=PARAMS,
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    log:
        dag.LOGS["train"],
    shell:
        dag.COMMANDS["train"] + " 2> {log}"
