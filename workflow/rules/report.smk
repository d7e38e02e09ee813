# The report: one self-contained HTML page (and Markdown) with every table, figure and their provenance.
# The DAG's final product: it needs evaluation, recognition (when enabled) and the training outputs.

REPORT = f"{RESULTS}/report"
# Recognition (Table 2) is an input when enabled and its rule is part of this workflow.
RECOGNITION_ON = CFG.get("recognize", {}).get("enabled", True)
REPORT_RECOGNITION = [f"{RESULTS}/recognition/{ESTIMATOR}/table.md"] if RECOGNITION_ON and rules.has("recognize") else []
if not RECOGNITION_ON:
    RECOGNITION_STATUS = "recognize.enabled is false in the config."
elif not REPORT_RECOGNITION:
    RECOGNITION_STATUS = "this workflow has no recognize rule."
else:
    RECOGNITION_STATUS = ""


rule report:
    input:
        evaluation=rules.evaluate.output,
        im2flow_metrics=rules.train_im2flow.output.metrics,
        im2flow_curve=rules.train_im2flow.output.curve,
        motion_net_metrics=rules.train_motion_net.output.metrics,
        motion_net_curve=rules.train_motion_net.output.curve,
        rejected=f"{RESULTS}/rejected_videos.tsv",
        recognition=REPORT_RECOGNITION,
    output:
        html=f"{REPORT}/report.html",
        md=f"{REPORT}/report.md",
    params:
        config=lambda wc: shlex.quote(json.dumps(CFG, sort_keys=True, default=str)),
        evaluation=EVALUATION,
        im2flow=f"{MODELS}/im2flow",
        motion_net=f"{MODELS}/motion_net",
        benchmarks=BENCH,
        # a param, not an input: every change to the manifest reaches the report through the shards anyway,
        # and as an input behind the demo checkpoint Snakemake 9 always plans the report again
        manifest=f"{RESULTS}/manifest.tsv",
        recognition=lambda wc, input: f"--recognition {input.recognition}" if input.recognition
        else f"--recognition-status {shlex.quote(RECOGNITION_STATUS)}",
    log:
        f"{LOGS}/report.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "im2flow report --evaluation {params.evaluation} --im2flow {params.im2flow} --motion-net {params.motion_net}"
        " --rejected {input.rejected} --manifest {params.manifest} --config-json {params.config}"
        " --benchmarks {params.benchmarks} {params.recognition} --out-html {output.html} --out-md {output.md}"
        " > {log} 2>&1"

FINAL_TARGETS.append(rules.report.output.html)
