# The report: one self-contained HTML page (and Markdown) with every table, figure and their provenance.
# Code: pipeline/report. The DAG's final product: it needs evaluation, recognition (when enabled)
# and the training outputs.


rule report:
    input:
        evaluation=rules.evaluate.output,
        im2flow_metrics=rules.train_im2flow.output.metrics,
        im2flow_curve=rules.train_im2flow.output.curve,
        motion_net_metrics=rules.train_motion_net.output.metrics,
        motion_net_curve=rules.train_motion_net.output.curve,
        videos=rules.video_lists.output.videos,
        rejected=rules.video_lists.output.rejected,
        duplicates=rules.video_lists.output.duplicates,
        recognition=report_recognition()[0],
    output:
        html=f"{RESULTS}/report/report.html",
        md=f"{RESULTS}/report/report.md",
    log:
        f"{LOGS}/report.log",
    conda:
        ENV
    threads: 1
    resources:
        **RES["report"],
    params:
        config=as_json(CFG),
        evaluation=lambda wc, input: os.path.dirname(input.evaluation[0]),
        im2flow=lambda wc, input: os.path.dirname(input.im2flow_metrics),
        motion_net=lambda wc, input: os.path.dirname(input.motion_net_metrics),
        benchmarks=BENCH,
        # only the current jobs' timings count (a deleted video's or a dropped shard's file does not)
        benchmark_files=lambda wc: as_json(current_benchmarks()),
        recognition=report_recognition_args,
    shell:
        "im2flow report --evaluation {params.evaluation} --im2flow {params.im2flow} --motion-net {params.motion_net}"
        " --videos {input.videos} --rejected {input.rejected} --duplicates {input.duplicates}"
        " --config-json {params.config} --benchmarks {params.benchmarks}"
        " --benchmark-files {params.benchmark_files} {params.recognition} --out-html {output.html} --out-md {output.md}"
        " > {log} 2>&1"


FINAL_TARGETS.append(rules.report.output.html)
