"""One module per experiment of the paper; the Snakemake rules call these through `wdrank.cli`."""
