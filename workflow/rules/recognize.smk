# Static-image action recognition with hallucinated motion (paper Table 2). Code: pipeline/recognize.
# Static dataset: the centre frame of every video of the configured splits with its true flow
# (rule static_shard, data.smk), or a folder of labelled still images (recognize.source: images).


rule recognize:
    input:
        unpack(recognize_inputs),
    output:
        table=f"{RESULTS}/recognition/{{estimator}}/table.csv",
        markdown=f"{RESULTS}/recognition/{{estimator}}/table.md",
        metrics=f"{RESULTS}/recognition/{{estimator}}/metrics.json",
        scores=f"{RESULTS}/recognition/{{estimator}}/scores.npz",
    log:
        f"{LOGS}/recognize/{{estimator}}.log",
    benchmark:
        f"{BENCH}/recognize/{{estimator}}.tsv"
    conda:
        ENV
    threads: REC["threads"]
    resources:
        **RES["recognize"],
        gpu=1,
    params:
        data=recognize_data_args,
        config=recognize_config,
        static_name=shlex.quote(REC["static_name"] or CFG["name"]),
        im2flow_name=shlex.quote(REC_IM2FLOW_NAME),
        out=lambda wc, output: out_dir(output),
    shell:
        "im2flow recognize {params.data} --im2flow {input.im2flow:q} --static-name {params.static_name}"
        " --im2flow-name {params.im2flow_name} --config-json {params.config} --out-dir {params.out}"
        " --threads {threads} > {log} 2>&1"


if REC["enabled"]:
    FINAL_TARGETS.extend([f"{RECOGNITION}/table.csv", f"{RECOGNITION}/table.md"])
