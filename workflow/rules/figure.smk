# The paper run's figures go to figures/, any other run's to figures/<run>/.
for _fig in stages.FIGURES:

    rule:
        name:
            f"figure_{_fig}"
        input:
            stages.aggregate_path(RUN, _fig),
        output:
            stages.figure_path(RUN, _fig),
        params:
            slice=keys_slice(f"figure_{_fig}"),
            fig=_fig,
        log:
            f"logs/{RUN}/figure/{_fig}.log",
        shell:
            "pgprobe figure {params.fig} --aggregate {input} --out {output} 2> {log}"
