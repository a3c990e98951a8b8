# spatial-probing: frozen features of vision-language and video generation models, probed for spatial
# knowledge. Stages: dataset -> extract (per model x shard, every timestep) -> fuse (materialised fusions) ->
# probe (per task x source x probe kind) -> aggregate (tables) and plots. The default config runs the
# embedded demo; see README.md and docs/.
from snakemake.utils import min_version

min_version("9.0")


# The demo config applies only when no --configfile is given: Snakemake would otherwise merge a user's
# config into the demo's (keeping the demo's datasets and models).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/fuse.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plan.smk"


report: "workflow/report/workflow.rst"


if dry_run_requested():
    print(plan_table(), file=sys.stderr)


rule all:
    input:
        rules.aggregate.output,
        rules.plots.output,
    default_target: True


onsuccess:
    print(summary_message())
