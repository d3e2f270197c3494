rule aggregate_fig6:
    """All landscape probes of fig 6, stacked on (seed, iteration)."""
    input:
        fig6_probes,
    output:
        "data/{run}/aggregates/fig6.nc",
    params:
        slice=keys_slice("aggregate_fig6"),
    log:
        "logs/{run}/aggregate/fig6.log",
    shell:
        "pgprobe aggregate fig6 --out {output} {input} 2> {log}"
