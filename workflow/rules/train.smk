# GPU rules: the motion-content network, then the Im2Flow encoder-decoder. Code: pipeline/train.
# Each declares gpu=1 so a workstation profile with `resources: gpu=N` never puts two on one card.


rule train_motion_net:
    input:
        train=TRAIN_SHARDS,
        test=TEST_SHARDS,
    output:
        checkpoint=f"{MODELS}/motion_net/checkpoint.pt",
        metrics=f"{MODELS}/motion_net/metrics.json",
        curve=f"{MODELS}/motion_net/loss_curve.png",
    log:
        f"{LOGS}/train_motion_net.log",
    benchmark:
        f"{BENCH}/train_motion_net.tsv"
    conda:
        ENV
    threads: GPU["threads"]
    resources:
        **RES["train_motion_net"],
        gpu=1,
    params:
        config=as_json(CFG["motion_net"]),
        out=lambda wc, output: out_dir(output),
    shell:
        "im2flow train-motion-net --shards {input.train} --test-shards {input.test} --out {params.out}"
        " --config-json {params.config} --threads {threads} > {log} 2>&1"


rule train_im2flow:
    input:
        train=TRAIN_SHARDS,
        motion_net=rules.train_motion_net.output.checkpoint,
    output:
        checkpoint=f"{MODELS}/im2flow/checkpoint.pt",
        metrics=f"{MODELS}/im2flow/metrics.csv",
        curve=f"{MODELS}/im2flow/loss_curve.png",
    log:
        f"{LOGS}/train_im2flow.log",
    benchmark:
        f"{BENCH}/train_im2flow.tsv"
    conda:
        ENV
    threads: GPU["threads"]
    resources:
        **RES["train_im2flow"],
        gpu=1,
    params:
        config=as_json(CFG["train"]),
        out=lambda wc, output: out_dir(output),
    shell:
        "im2flow train --shards {input.train} --motion-net {input.motion_net} --out {params.out}"
        " --config-json {params.config} --threads {threads} > {log} 2>&1"


FINAL_TARGETS.extend(
    [rules.train_motion_net.output.metrics, rules.train_im2flow.output.checkpoint]
)
