# The paper's figures and tables: one rule per entry of wdrank.products.PRODUCTS, named like it (e.g.
# `snakemake --cores 1 fig3_vit_rank`). Each reads result tables under results/tables/, calls `python -m wdrank figure
# NAME` or `table NAME` with the entry's options taken from the config, and writes results/figures/NAME.{pdf,png} or
# results/tables/NAME.{csv,md,...}; the report shows it with the caption workflow/report/NAME.rst. Generated from the
# list so that a product is declared once: its entry says what each rule below reads, passes and writes.


def wildcard_values(family):
    """The values a product's {family} wildcard takes (wdrank.products.WILDCARDS): audited models, audited
    trajectories, or the folders of the enabled trained experiments."""
    if family == "model":
        return list(AUDIT_MODELS)
    if family == "trajectory":
        return list(AUDIT_TRAJECTORIES)
    return [
        name for section, name in EXPERIMENT_NAMES.items() if config[section]["enabled"]
    ]


def product_inputs(product):
    """{argument: result table(s)} of a product: a gathered table expands over its wildcard's values."""
    inputs = {}
    for name, stem in product.reads.items():
        path = f"results/tables/{stem}.csv"
        family = product.gathered(name)
        inputs[name] = (
            expand(path, **{family: wildcard_values(family)}) if family else path
        )
    return inputs


def product_outputs(product):
    """{format: file} of a product; the PNG of a figure (the CSV of a table) goes into the report."""
    outputs = product.outputs()
    shown = "png" if product.kind == "figure" else "csv"
    labels = {product.wildcard: f"{{{product.wildcard}}}"} if product.wildcard else None
    outputs[shown] = report(
        outputs[shown],
        caption=f"../report/{product.name}.rst",
        category=product.category,
        labels=labels,
    )
    return outputs


def product_arguments(product):
    """The command line of a product's job (a function of its wildcards, inputs and outputs), every word quoted."""

    def arguments(wildcards, input, output):
        options = option_values(product, config, wildcards)
        words = command_arguments(product, input, options, output)
        if product.kind == "figure":
            words += ["--width", FIGURE_WIDTH]
        return " ".join(map(shlex.quote, words))

    return arguments


def product_files(product, section):
    """What `all` asks of a product for one enabled experiment (config section): its files, for every value of its
    wildcard (a product without a section: for that experiment's); none where a table it gathers would be empty.
    """
    if product.section is None:
        wanted, values = section in EXPERIMENT_NAMES, [EXPERIMENT_NAMES.get(section)]
    else:
        wanted = product.section == section
        values = wildcard_values(product.wildcard) if product.wildcard else []
    gathered = {product.gathered(name) for name in product.reads} - {None}
    if not wanted or not all(map(wildcard_values, gathered)):
        return []
    patterns = list(product.outputs().values())
    if not product.wildcard:
        return patterns
    return expand(patterns, **{product.wildcard: values})


for product in PRODUCTS:

    rule:
        name:
            product.name
        input:
            **product_inputs(product),
            code=code(product.module),
        output:
            **product_outputs(product),
        log:
            f"logs/{product.stem}.log",
        benchmark:
            f"logs/{product.stem}.benchmark.tsv"
        wildcard_constraints:
            **(
                {
                    product.wildcard: "|".join(
                        map(re.escape, wildcard_values(product.wildcard))
                    )
                    or "^$"
                }
                if product.wildcard
                else {}
            ),
        conda:
            WDRANK_ENV
        threads: job_threads(product.name)
        resources:
            **job_resources(product.name),
        params:
            kind=product.kind,
            name=product.name,
            arguments=product_arguments(product),
        shell:
            ATTEMPT_HEADER
            + "python -m wdrank {params.kind} {params.name} {params.arguments} >> {log} 2>&1"
