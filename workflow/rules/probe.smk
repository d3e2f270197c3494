rule probe_landscape:
    """Surrogate and true reward on the plane (step, random direction) around theta_t."""
    input:
        "data/{run}/checkpoints/{env}/{algo}/seed{seed}/iter{iteration}.nc",
    output:
        "data/{run}/probes/landscape/{env}/{algo}/seed{seed}/iter{iteration}.nc",
    params:
        slice=keys_slice("probe_landscape"),
        args=PARAMS,
    threads: workflow.cores
    log:
        "logs/{run}/probes/landscape/{env}/{algo}/seed{seed}/iter{iteration}.log",
    shell:
        "pgprobe probe landscape {params.args} --checkpoint {input} --out {output} --threads {threads} 2> {log}"
