# Static-image action recognition with hallucinated motion (paper Table 2).
# Static dataset: the centre frame of every video of the configured splits, with the five-future-frame
# true flow of that frame (one `im2flow static-shard` job per shard, under static/), or a folder
# of labelled still images (recognize.source: images). Then `im2flow recognize` trains the streams,
# fuses them and writes the table that the report reads.

REC = CFG["recognize"]
STATIC = f"{RESULTS}/static"
RECOGNITION = f"{RESULTS}/recognition/{ESTIMATOR}"
# The Im2Flow checkpoint: this run's, or one trained on another dataset (the transfer setting).
REC_IM2FLOW = REC["im2flow_checkpoint"] or f"{RESULTS}/models/{ESTIMATOR}/im2flow/checkpoint.pt"
REC_IM2FLOW_NAME = REC["im2flow_name"] or (CFG["name"] if not REC["im2flow_checkpoint"] else "external")


def static_shard_inputs(wildcards):
    return DEMO_ROOT + [p for v in shard_members(wildcards.split, wildcards.shard) for p in existing_video(v.video_id)]


def static_shard_spec(wildcards):
    spec = {
        "videos": [[v.video_id, v.label, video_file(v.video_id)] for v in shard_members(wildcards.split, wildcards.shard)],
        "frame_size": CFG["frames"]["size"],
        "class_names": class_names(list(dataset_videos().values())),
        "estimator": wildcards.estimator,
        "estimator_params": CFG["flow"]["params"].get(wildcards.estimator, {}),
        "split": wildcards.split,
        "shard_index": int(wildcards.shard),
        "magnitude_clip": CFG["shards"]["magnitude_clip"],
        "codec": CFG["shards"]["codec"],
    }
    return shlex.quote(json.dumps(spec, sort_keys=True))


# One job per static shard: decode its member videos, keep each centre frame and its true flow.
rule static_shard:
    input:
        static_shard_inputs,
    output:
        shard=f"{STATIC}/shards/{{estimator}}/{{split}}-{{shard}}.h5",
        rejected=f"{STATIC}/shards/{{estimator}}/{{split}}-{{shard}}.rejected.tsv",
    params:
        spec=static_shard_spec,
    log:
        f"{LOGS}/static/shards/{{estimator}}/{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/static/shards/{{estimator}}/{{split}}-{{shard}}.tsv"
    threads: CFG["flow"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "im2flow static-shard --spec {params.spec} --out {output.shard} --rejected-out {output.rejected} > {log} 2>&1"


def recognize_inputs(wildcards):
    inputs = {"im2flow": REC_IM2FLOW}
    if REC["source"] == "images":
        if not REC["images_root"]:
            raise WorkflowError("recognize.source is 'images' but recognize.images_root is not set")
        inputs["images"] = REC["images_root"]
    else:
        for split in SPLITS:
            inputs[split] = expand(f"{STATIC}/shards/{wildcards.estimator}/{split}-{{shard}}.h5", shard=SHARD_IDS)
    return inputs


def recognize_data_args(wildcards, input):
    if REC["source"] == "images":
        size = " ".join(str(s) for s in CFG["frames"]["size"])
        return (f"--images-root {shlex.quote(input.images)} --image-size {size}"
                f" --test-fraction {REC['images_test_fraction']}")
    return f"--train-shards {' '.join(input.train)} --test-shards {' '.join(input.test)}"


rule recognize:
    input:
        unpack(recognize_inputs),
    output:
        table=f"{RESULTS}/recognition/{{estimator}}/table.csv",
        markdown=f"{RESULTS}/recognition/{{estimator}}/table.md",
        metrics=f"{RESULTS}/recognition/{{estimator}}/metrics.json",
        scores=f"{RESULTS}/recognition/{{estimator}}/scores.npz",
    params:
        data=recognize_data_args,
        # Im2Flow at test time as in Table 1 (evaluate's BatchNorm mode and flip averaging)
        config=lambda wc: shlex.quote(json.dumps(REC | {k: CFG["evaluate"].get(k) for k in ("bn_mode", "flip_average")
                                                       if CFG["evaluate"].get(k) is not None}, sort_keys=True)),
        static_name=shlex.quote(REC["static_name"] or CFG["name"]),
        im2flow_name=shlex.quote(REC_IM2FLOW_NAME),
        out=lambda wc: f"{RESULTS}/recognition/{wc.estimator}",
    log:
        f"{LOGS}/recognize/{{estimator}}.log",
    benchmark:
        f"{BENCH}/recognize/{{estimator}}.tsv"
    threads: REC["threads"]
    resources:
        gpu=1,
        mem_mb=GPU["mem_mb"],
        runtime=GPU["runtime"],
    shell:
        "im2flow recognize {params.data} --im2flow {input.im2flow:q} --static-name {params.static_name}"
        " --im2flow-name {params.im2flow_name} --config-json {params.config} --out-dir {params.out}"
        " --threads {threads} > {log} 2>&1"


if REC["enabled"]:
    FINAL_TARGETS.extend([f"{RECOGNITION}/table.csv", f"{RECOGNITION}/table.md"])
