rule train:
    """One agent = (env, algo, seed): training log, snapshots every train.save_every iterations."""
    output:
        log="data/{run}/agents/{env}/{algo}/seed{seed}/train.nc",
        snapshots=directory("data/{run}/agents/{env}/{algo}/seed{seed}/snapshots"),
    params:
        slice=keys_slice("train"),
        out=lambda w: stages.agent_dir(w.run, w.env, w.algo, w.seed),
        args=PARAMS,
    log:
        "logs/{run}/train/{env}/{algo}/seed{seed}.log",
    shell:
        "pgprobe train {params.args} --env {wildcards.env} --algo {wildcards.algo} --seed {wildcards.seed} "
        "--out {params.out} 2> {log}"
