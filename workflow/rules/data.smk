# Data preparation: demo renders -> manifest -> per shard: every member video's frames and flow
# (batched across videos, cached per video) -> HDF5 shard (+ rejected-videos list); the static shards
# of the recognition (centre frames with their true flow). Code: pipeline/data.


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
        **RES["demo_dataset"],
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
        **RES["manifest"],
    params:
        root=lambda wc: shlex.quote(DATASET_LINK),
        layout=DATASET["layout"],
        split=DATASET["split"],
        splits_dir=lambda wc: shlex.quote(DATASET["splits_dir"] or DATASET_LINK),
        test_fraction=DATASET["test_fraction"],
        group=lambda wc: (
            f"--group-pattern {shlex.quote(DATASET['group_pattern'])}"
            if DATASET["group_pattern"]
            else ""
        ),
        digest=dataset_digest,
    shell:
        "im2flow discover --root {params.root} --layout {params.layout} --split {params.split}"
        " --splits-dir {params.splits_dir} --test-fraction {params.test_fraction} {params.group} --out {output} > {log} 2>&1"


# One job per shard: the flow targets of its member videos (decoded ahead, estimator batches
# across videos, each video's result cached under TARGET_CACHE and reused by later runs), then
# the shard. gpu=1 when the estimator runs on CUDA: one flow job per card, large batches.
rule shard:
    input:
        member_videos,
    output:
        shard=f"{RESULTS}/shards/{{estimator}}/{{split}}-{{shard}}.h5",
        videos=f"{RESULTS}/shards/{{estimator}}/{{split}}-{{shard}}.videos.tsv",
    log:
        f"{LOGS}/shards/{{estimator}}/{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/shards/{{estimator}}/{{split}}-{{shard}}.tsv"
    conda:
        ENV
    threads: CFG["flow"]["threads"]
    resources:
        **RES["shard"],
        gpu=FLOW_GPUS,
    params:
        spec=shard_spec,
        dataset=DATASET_LINK,
        cache=TARGET_CACHE,
    shell:
        "im2flow shard --spec {params.spec} --out {output.shard} --videos-out {output.videos}"
        " --dataset {params.dataset:q} --cache {params.cache:q} --threads {threads} > {log} 2>&1"


# The same job for the recognition's static set: the centre frame of each video with its true flow.
rule static_shard:
    input:
        member_videos,
    output:
        shard=f"{STATIC}/shards/{{estimator}}/{{split}}-{{shard}}.h5",
        videos=f"{STATIC}/shards/{{estimator}}/{{split}}-{{shard}}.videos.tsv",
    log:
        f"{LOGS}/static/shards/{{estimator}}/{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/static/shards/{{estimator}}/{{split}}-{{shard}}.tsv"
    conda:
        ENV
    threads: CFG["flow"]["threads"]
    resources:
        **RES["static_shard"],
        gpu=FLOW_GPUS,
    params:
        spec=static_shard_spec,
        dataset=DATASET_LINK,
        cache=TARGET_CACHE,
    shell:
        "im2flow shard --spec {params.spec} --out {output.shard} --videos-out {output.videos}"
        " --dataset {params.dataset:q} --cache {params.cache:q} --threads {threads} > {log} 2>&1"


# What became of every video: usable or not (and why), near-duplicates across the splits.
rule video_lists:
    input:
        expand(
            f"{RESULTS}/shards/{ESTIMATOR}/{{split}}-{{shard}}.videos.tsv",
            split=SPLITS,
            shard=SHARD_IDS,
        ),
    output:
        videos=f"{RESULTS}/videos.tsv",
        rejected=f"{RESULTS}/rejected_videos.tsv",
        duplicates=f"{RESULTS}/near_duplicates.tsv",
    log:
        f"{LOGS}/video_lists.log",
    conda:
        ENV
    threads: 1
    resources:
        **RES["video_lists"],
    shell:
        "im2flow videos {input} --videos-out {output.videos} --rejected-out {output.rejected}"
        " --duplicates-out {output.duplicates} > {log} 2>&1"


rule prepare_data:
    input:
        SHARDS,
        f"{RESULTS}/manifest.tsv",
        rules.video_lists.output,


FINAL_TARGETS.extend(rules.prepare_data.input)
