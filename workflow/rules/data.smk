# Data preparation: demo renders -> manifest -> per video: frames and flow -> shards (+ rejected-videos
# list); the static shards of the recognition (centre frames with their true flow). Code: pipeline/data.


checkpoint demo_dataset:
    output:
        directory(DATASET["root"]),
    log:
        f"{LOGS}/demo_dataset.log",
    benchmark:
        f"{BENCH}/demo_dataset.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        classes=CFG["demo"]["classes"],
        videos_per_class=CFG["demo"]["videos_per_class"],
        test_groups=CFG["demo"]["test_groups"],
        size=CFG["demo"]["size"],
        frames=CFG["demo"]["frames"],
        seed=CFG["demo"]["seed"],
    shell:
        "im2flow demo-dataset --out {output} --classes {params.classes}"
        " --videos-per-class {params.videos_per_class} --test-groups {params.test_groups}"
        " --size {params.size} --frames {params.frames} --seed {params.seed} > {log} 2>&1"


rule manifest:
    input:
        DEMO_ROOT,
    output:
        f"{RESULTS}/manifest.tsv",
    log:
        f"{LOGS}/manifest.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        root=lambda wc: shlex.quote(DATASET["root"]),
        layout=DATASET["layout"],
        split=DATASET["split"],
        splits_dir=lambda wc: shlex.quote(DATASET["splits_dir"] or DATASET["root"]),
        test_fraction=DATASET["test_fraction"],
        digest=dataset_digest,
    shell:
        "im2flow discover --root {params.root} --layout {params.layout} --split {params.split}"
        " --splits-dir {params.splits_dir} --test-fraction {params.test_fraction} --out {output} > {log} 2>&1"


rule video_targets:
    input:
        video_input,
    output:
        frames=f"{RESULTS}/frames/{{vid}}.npz",
        flow=f"{RESULTS}/flow/{ESTIMATOR}/{{vid}}.npz",
    log:
        f"{LOGS}/video_targets/{{vid}}.log",
    benchmark:
        f"{BENCH}/video_targets/{{vid}}.tsv"
    # Frames and flow of a video are one job; on a cluster the SLURM profile's
    # `group-components: video=N` packs N of them into one submission (ignored in local runs).
    group:
        "video"
    conda:
        ENV
    threads: CFG["flow"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        video=video_path,
        size=CFG["frames"]["size"],
        policy=CFG["frames"]["policy"],
        every=CFG["frames"]["every"],
        per_video=CFG["frames"]["per_video"],
        estimator=ESTIMATOR,
        estimator_params=as_json(ESTIMATOR_PARAMS),
    shell:
        "im2flow video-targets --video {params.video} --frames-out {output.frames:q} --flow-out {output.flow:q}"
        " --size {params.size} --policy {params.policy} --every {params.every} --per-video {params.per_video}"
        " --estimator {params.estimator} --params {params.estimator_params} > {log:q} 2>&1"


rule shard:
    input:
        unpack(shard_inputs),
    output:
        shard=f"{RESULTS}/shards/{{estimator}}/{{split}}-{{shard}}.h5",
        rejected=f"{RESULTS}/shards/{{estimator}}/{{split}}-{{shard}}.rejected.tsv",
    log:
        f"{LOGS}/shards/{{estimator}}/{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/shards/{{estimator}}/{{split}}-{{shard}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=shard_spec,
    shell:
        "im2flow shard --spec {params.spec} --out {output.shard} --rejected-out {output.rejected} > {log} 2>&1"


# One job per static shard: decode its member videos, keep each centre frame and its true flow.
rule static_shard:
    input:
        static_shard_inputs,
    output:
        shard=f"{STATIC}/shards/{{estimator}}/{{split}}-{{shard}}.h5",
        rejected=f"{STATIC}/shards/{{estimator}}/{{split}}-{{shard}}.rejected.tsv",
    log:
        f"{LOGS}/static/shards/{{estimator}}/{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/static/shards/{{estimator}}/{{split}}-{{shard}}.tsv"
    conda:
        ENV
    threads: CFG["flow"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        spec=static_shard_spec,
    shell:
        "im2flow static-shard --spec {params.spec} --out {output.shard} --rejected-out {output.rejected} > {log} 2>&1"


rule rejected_videos:
    input:
        expand(
            f"{RESULTS}/shards/{ESTIMATOR}/{{split}}-{{shard}}.rejected.tsv",
            split=SPLITS,
            shard=SHARD_IDS,
        ),
    output:
        f"{RESULTS}/rejected_videos.tsv",
    log:
        f"{LOGS}/rejected_videos.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "im2flow rejected {input} --out {output} > {log} 2>&1"


rule prepare_data:
    input:
        SHARDS,
        f"{RESULTS}/manifest.tsv",
        f"{RESULTS}/rejected_videos.tsv",


FINAL_TARGETS.extend(rules.prepare_data.input)
