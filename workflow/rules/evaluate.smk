# Flow-prediction evaluation (Table 1: Im2Flow against the baselines) and motion potential.
# Code: pipeline/evaluate. gpu=1: it runs the Im2Flow network and the baselines' CNNs.


rule evaluate:
    input:
        train=TRAIN_SHARDS,
        test=TEST_SHARDS,
        checkpoint=rules.train_im2flow.output.checkpoint,
    output:
        table=f"{EVALUATION}/table.csv",
        table_md=f"{EVALUATION}/table.md",
        per_image=f"{EVALUATION}/per_image.csv",
        examples=f"{EVALUATION}/examples.png",
        motion_potential=f"{EVALUATION}/motion_potential.csv",
        motion_potential_png=f"{EVALUATION}/motion_potential.png",
        summary=f"{EVALUATION}/summary.json",
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{BENCH}/evaluate.tsv"
    conda:
        ENV
    threads: GPU["threads"]
    resources:
        **RES["evaluate"],
        gpu=1,
    params:
        config=as_json(CFG["evaluate"]),
        out=lambda wc, output: out_dir(output),
    shell:
        "im2flow evaluate --train-shards {input.train} --test-shards {input.test} --checkpoint {input.checkpoint}"
        " --out {params.out} --config-json {params.config} --threads {threads} > {log} 2>&1"


FINAL_TARGETS.extend(
    [rules.evaluate.output.table, rules.evaluate.output.motion_potential]
)
