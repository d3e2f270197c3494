rule checkpoint:
    """Replay iteration t from its snapshot: the agent at theta_t, its batch and its step."""
    input:
        snapshots="data/{run}/agents/{env}/{algo}/seed{seed}/snapshots",
    output:
        "data/{run}/checkpoints/{env}/{algo}/seed{seed}/iter{iteration}.nc",
    params:
        slice=keys_slice("checkpoint"),
        train_dir=lambda w: stages.agent_dir(w.run, w.env, w.algo, w.seed),
        it=lambda w: int(w.iteration),
        args=PARAMS,
    log:
        "logs/{run}/checkpoint/{env}/{algo}/seed{seed}/iter{iteration}.log",
    shell:
        "pgprobe checkpoint {params.args} --env {wildcards.env} --algo {wildcards.algo} "
        "--seed {wildcards.seed} --iteration {params.it} --train-dir {params.train_dir} --out {output} 2> {log}"
