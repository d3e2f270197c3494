# pgprobe: train -> checkpoint -> probe -> aggregate -> figure.
#   snakemake --cores 32                                                      (every figure, paper scale)
#   snakemake --cores 2 figures/quick/fig6.pdf --configfile config/quick.yaml  (a laptop)
# Paths, commands, params keys and code of every stage live in src/pgprobe/pipeline/dag.py, what each
# probe and figure reads in src/pgprobe/pipeline/declarations.py; dvc.yaml is generated from the same
# (`pgprobe dvc-yaml`).  The default profile (profiles/default -> workflow/profiles/default) is used
# by every call.
from snakemake.utils import validate

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/checkpoint.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figure.smk"


rule all:
    """Every figure of the run."""
    input:
        [dag.path("figure", run=RUN, figure=fig) for fig in dag.figures_of(config)],
    default_target: True
