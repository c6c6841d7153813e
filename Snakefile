# memlab: when does a model memorize, and what does that cost it on new or perturbed data?
# The study reads top to bottom: data -> train -> evaluate -> analyze -> figures -> report.
from snakemake.utils import min_version

min_version("9.0")


# The default study, unless a config file is given (--configfile): Snakemake would deep-merge
# the two and mix the default study's models and regimes into the one asked for.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/removal.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
