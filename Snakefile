# memlab's entry point in its own checkout (`snakemake` here). The workflow itself is
# workflow/Snakefile: the file that Snakemake's module system and `snakedeploy deploy-workflow`
# load (github(..., path="workflow/Snakefile")), so it holds every rule, include and directive.
#
# Loaded as the entry Snakefile, the way the module system loads it: an `include:` would restore
# this file's default target afterwards (none), and a bare `snakemake` would plan nothing
# instead of the study's `rule all`. INTERNAL (Snakemake 9.27.1): Workflow.include's
# overwrite_default_target, what `include:` compiles to with the flag set.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
