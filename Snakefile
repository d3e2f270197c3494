# pgprobe: train -> checkpoint -> probe -> aggregate -> figure.
#   snakemake --cores 32 figures/fig6.pdf                                   (paper scale)
#   snakemake --cores 2 figures/quick/fig6.pdf --configfile config/quick.yaml  (a laptop)
# The DAG, params keys and source files of every stage live in src/pgprobe/stages.py;
# dvc.yaml is generated from the same module (`pgprobe dvc-yaml`).
from snakemake.utils import validate

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/checkpoint.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figure.smk"


rule all:
    input:
        [stages.figure_path(RUN, fig) for fig in stages.FIGURES if fig in config.get("figures", {})],
    default_target: True
